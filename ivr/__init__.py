"""What is said and pressed: IVR flows as data, a pure flow engine and the prompt catalogs."""
