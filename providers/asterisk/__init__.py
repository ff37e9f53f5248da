"""Asterisk backend: AMI through panoramisk 1.4, IVR through FastAGI."""
