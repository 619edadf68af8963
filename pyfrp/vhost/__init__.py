"""HTTP and HTTPS virtual hosts: routing by Host header or TLS SNI name (frp pkg/util/vhost)."""
