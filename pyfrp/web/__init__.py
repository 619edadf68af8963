"""The web servers of pyfrps (dashboard) and pyfrpc (admin API), and what they share."""
