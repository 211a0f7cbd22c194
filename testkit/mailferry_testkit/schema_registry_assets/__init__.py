"""Apicurio Registry's build (its pom and a stand-in bean), package data of the test kit
(mailferry_testkit.schema_registry)."""
