"""s3proxy's Maven pom, package data of the test kit (mailferry.testing.s3proxy)."""
