"""Running a node: the twistd options (:mod:`.tap`), the node service (:mod:`.service`), the key
file (:mod:`.keyfile`), the status endpoint (:mod:`.status`) and bootstrap lists (:mod:`.bootstrap`)."""
