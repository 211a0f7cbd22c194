"""mailferry's test kit: the real servers and the doubles that tests, benchmarks and the demo run.

A distribution of its own (``testkit/``, installed with ``mailferry[test]`` or ``mailferry[demo]``)
so the runtime wheel carries none of it. It holds a throwaway Dovecot (``dovecot``), a
multi-broker Kafka cluster (``kafka_cluster``), s3proxy from Maven Central (``s3proxy``), a test
PKI (``certs``), realistic sample mail (``sample_mail``), the demo (``demo``) and three EMULATORS of
Microsoft services (``ews_emulator``, ``graph_emulator``, ``identity_emulator``). An emulator is not
the service: it implements the subset of the protocol mailferry uses, strictly, with faults on
demand. What a test starts it stops the same way (``served.Served``); the emulators share one
HTTP server life cycle (``loopback_http``).
"""
