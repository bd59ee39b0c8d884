"""Running a node: the twistd options (:mod:`.tap`), start failures and exit status (:mod:`.process`),
the node service (:mod:`.service`), the key file (:mod:`.keyfile`), bootstrap lists (:mod:`.bootstrap`),
and the status port: one snapshot (:mod:`.status`) served as JSON, a page (:mod:`.page`, with
:mod:`.history`) and Prometheus metrics (:mod:`.metrics`) by :mod:`.web`."""
