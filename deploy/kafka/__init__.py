"""Files of the embedded Kafka broker (pom, server template, log config).

Installed as ``mailferry.kafka.assets``.
"""
