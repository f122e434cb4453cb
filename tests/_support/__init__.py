"""Support shared by the test packages: certificates, hostile peers, bounded waits."""
