"""``mailferry check``: one mailbox or target tested now, nothing fetched or written."""
