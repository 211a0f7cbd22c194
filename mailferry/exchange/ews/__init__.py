"""EWS through exchangelib: one connection per (tenant, target) (``connect``), every patch of
exchangelib's internals (``exchangelib_patches``), the error table (``errors``)."""
