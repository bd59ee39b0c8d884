"""A stand-in for the DHT in the hidden-service scenarios: one process holding a key -> values
map on 127.0.0.1, spoken to with JSON datagrams ({"op": "put"|"get", "id", "key", "value"}).

pyipv8's hidden services only need ``announce(info_hash, intro_point)`` at the introduction
point and ``lookup(info_hash)`` at the seeker's exit; a real DHT (pyipv8's DHTCommunity or
mainline) would add its own lookup latency, which is not what these scenarios compare.
"""
import asyncio
import json

from bench import ctl


class Store(asyncio.DatagramProtocol):
    def __init__(self):
        self.data = {}
        self.ops = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            msg = json.loads(data)
        except ValueError:
            return
        self.ops += 1
        if msg.get("op") == "put":
            vals = self.data.setdefault(msg["key"], [])
            if msg["value"] not in vals:
                vals.append(msg["value"])
            reply = {"id": msg.get("id"), "ok": True}
        else:
            reply = {"id": msg.get("id"), "values": self.data.get(msg.get("key"), [])}
        self.transport.sendto(json.dumps(reply).encode(), addr)

    def clear(self):
        self.data.clear()
        return True

    def stats(self):
        return ctl.base_stats({"ops": self.ops, "keys": len(self.data)})


def main():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    store = Store()
    transport, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(lambda: store, local_addr=("127.0.0.1", 0)))
    c = ctl.Control(loop, {"clear": store.clear, "stats": store.stats}, loop.stop)
    c.start()
    c.ready(addr=list(transport.get_extra_info("sockname")[:2]))
    loop.run_forever()


if __name__ == "__main__":
    main()
