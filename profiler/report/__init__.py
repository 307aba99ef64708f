"""Reports over run records: compare GPUs on a problem (``compare``), render the comparison
(``table``), plot it (``plot``); ``runs`` loads and groups records, ``peaks`` knows peak rates."""
