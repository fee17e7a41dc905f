"""Source kinds behind one fetch interface: local files, HTTP(S) and S3."""
