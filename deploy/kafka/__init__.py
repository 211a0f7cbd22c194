"""Files of the embedded Kafka broker (pom, server template, log config), installed as ``mailferry.kafka.assets``."""
