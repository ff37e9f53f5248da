"""Who: residents, contacts, merchants, contracts, the service catalog and grids."""
