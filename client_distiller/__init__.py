"""client_distiller."""
