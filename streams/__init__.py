"""The stream app (faust-streaming): recipient resolution, rules, deduplication, loop guard.

Headers, addresses and the Message-ID are read through ``mailferry.mail``, the one parser of
untrusted mail that every stage shares.
"""
