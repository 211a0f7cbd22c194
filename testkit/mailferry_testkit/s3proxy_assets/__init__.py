"""s3proxy's Maven pom, package data of ``mailferry_testkit.s3proxy``."""
