"""Sans-IO Redis pieces of the multi-node adapter: the RESP reply reader (:mod:`.resp`), the
wire codec of the messages between nodes, byte-compatible with Node's redis adapter
(:mod:`.codec`), and the table of known nodes (:mod:`.nodes`). No sockets, tasks or clock:
the Trio side is :mod:`pyserver.trio.redis`."""
