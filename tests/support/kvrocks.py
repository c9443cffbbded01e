"""A stand-in for Apache Kvrocks 2.7.0 (CVAT's ``cvat_redis_ondisk``), which cannot be installed here.

A TCP proxy in front of a real redis-server that answers, where Kvrocks 2.7.0 differs from Redis, as
Kvrocks does; storage and every other reply stay the real redis-server's. Read from Kvrocks's source at
tag v2.7.0:

- ``HELLO`` (src/commands/cmd_server.cc, CommandHello): any protocol 2 or 3 is accepted and answered
  with a RESP2 array ``server redis proto 2 mode standalone``; AUTH and SETNAME options as there.
- ``AUTH`` (CommandAuth): ``ERR invalid password``; 2.9 and later say ``ERR Invalid password``
  (`auth_error`). Without AUTH, every command but AUTH and HELLO is ``NOAUTH Authentication required.``
  (src/server/redis_connection.cc, Connection::ExecuteCommands), checked after the command lookup.
- A command 2.7.0 does not register is ``ERR unknown command <name>``: `KVROCKS_2_7_COMMANDS` is every
  name registered with ``MakeCmdAttr`` in its src/commands/cmd_*.cc. ``CLIENT`` takes only the
  subcommands CommandClient::Parse accepts (no SETINFO).
- ``max-db-size`` reached (src/storage/storage.cc, Storage::writeToDB): every write, DEL included in
  2.7.0, fails with RocksDB's SpaceLimit status, ``ERR IO error: Space limit reached``. Set `full`.

It also counts what a write costs Kvrocks's disk (`written`): a SET writes its value; an EXPIRE of a
string rewrites the whole value (src/storage/redis_db.cc, Database::Expire: the value lives in the
metadata record that the new deadline is written into); a DEL writes a tombstone per key.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter

from tests.support.redis_server import free_port

KVROCKS_2_7_COMMANDS = frozenset(
    """
    _db_name _fetch_file _fetch_meta append auth bf.add bf.card bf.exists bf.info bf.insert bf.madd
    bf.mexists bf.reserve bgsave bitcount bitfield bitop bitpos blmove blmpop blpop brpop bzmpop bzpopmax
    bzpopmin cad cas client cluster clusterx command compact config dbsize debug decr decrby del discard
    disk echo eval eval_ro evalsha evalsha_ro exec exists expire expireat flushall flushbackup flushdb
    function geoadd geodist geohash geopos georadius georadius_ro georadiusbymember georadiusbymember_ro
    geosearch geosearchstore get getbit getdel getex getrange getset hdel hello hexists hget hgetall
    hincrby hincrbyfloat hkeys hlen hmget hmset hrandfield hrangebylex hscan hset hsetnx hstrlen hvals
    incr incrby incrbyfloat info json.arrappend json.arrindex json.arrinsert json.arrlen json.arrpop
    json.arrtrim json.clear json.del json.forget json.get json.info json.merge json.numincrby
    json.nummultby json.objkeys json.objlen json.set json.strappend json.strlen json.toggle json.type keys
    lastsave lindex linsert llen lmove lmpop lpop lpos lpush lpushx lrange lrem lset ltrim memory mget
    monitor move mpublish mset msetnx multi namespace object perflog persist pexpire pexpireat ping
    psetex psubscribe psync pttl publish pubsub punsubscribe quit randomkey rdb replconf restore role
    rpop rpoplpush rpush rpushx sadd scan scard script sdiff sdiffstore select set setbit setex setnx
    setrange shutdown siadd sicard siexists sinter sintercard sinterstore sirange sirangebyvalue sirem
    sirevrange sirevrangebyvalue sismember slaveof slowlog smembers smismember smove spop srandmember
    srem sscan stats strlen subscribe substr sunion sunionstore time ttl type unlink unsubscribe unwatch
    watch xadd xdel xgroup xinfo xlen xrange xread xrevrange xsetid xtrim zadd zcard zcount zincrby
    zinterstore zlexcount zmpop zmscore zpopmax zpopmin zrange zrangebylex zrangebyscore zrangestore
    zrank zrem zremrangebylex zremrangebyrank zremrangebyscore zrevrange zrevrangebylex zrevrangebyscore
    zrevrank zscan zscore zunion zunionstore
    """.split()  # noqa: SIM905 (the list as it reads in one line per few names)
)
WRITES = frozenset(
    """
    set setex psetex setnx mset msetnx append getset getdel del unlink expire pexpire expireat
    pexpireat persist incr incrby decr decrby flushall flushdb
    """.split()  # noqa: SIM905
)
HELLO_REPLY = b"*6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:2\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
FULL_REPLY = b"-ERR IO error: Space limit reached\r\n"


def _error(text: str) -> bytes:
    return f"-{text}\r\n".encode()


def _command(args: list[bytes]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        parts += [f"${len(arg)}\r\n".encode(), arg, b"\r\n"]
    return b"".join(parts)


def read_command(stream) -> list[bytes] | None:
    """One command (an array of bulk strings, as every client library sends them); None at EOF."""
    line = stream.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()  # an inline command
    args = []
    for _ in range(int(line[1:])):
        length = int(stream.readline()[1:])
        args.append(stream.read(length + 2)[:-2])
    return args


def read_reply(stream) -> bytes:
    """One RESP2 reply, as raw bytes."""
    line = stream.readline()
    if not line:
        raise ConnectionError("the redis-server behind the stand-in closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"$" and int(rest) >= 0:
        return line + stream.read(int(rest) + 2)
    if kind == b"*" and int(rest) > 0:
        return line + b"".join(read_reply(stream) for _ in range(int(rest)))
    return line


class KvrocksStandIn:
    """Listen on a loopback port (`port`, else a free one); forward to the redis-server at `backend_port`."""

    def __init__(
        self,
        backend_port: int,
        password: str | None = None,
        auth_error: str = "invalid password",
        port: int | None = None,
    ):
        self.backend_port = backend_port
        self.password = password
        self.auth_error = auth_error  # "Invalid password" for Kvrocks 2.9 and later
        self.port = port or free_port()
        self.full = False  # max-db-size reached
        self.written: Counter[str] = Counter()  # bytes Kvrocks writes, by command
        self.commands: Counter[str] = Counter()
        self.expired: Counter[str] = Counter()  # EXPIREs by key
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> KvrocksStandIn:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Kvrocks gone: the port refuses connections and open ones are cut."""
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread in accept(), as close() does not
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def __enter__(self) -> KvrocksStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self, password: str | None = None) -> dict[str, str]:
        env = {"CVAT_FUNCTIONS_REDIS_HOST": "127.0.0.1", "CVAT_FUNCTIONS_REDIS_PORT": str(self.port)}
        if password:
            env["CVAT_FUNCTIONS_REDIS_PASSWORD"] = password
        return env

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.update((client, backend))
        session = _Session(self, client.makefile("rb"), backend.makefile("rb"), backend)
        try:
            while (args := read_command(session.client)) is not None:
                if args:
                    client.sendall(session.answer(args))
        except (OSError, ValueError, ConnectionError):
            pass
        finally:
            with self._lock:
                self._sockets.difference_update((client, backend))
            client.close()
            backend.close()


class _Session:
    """One client connection: its authentication and its backend connection."""

    def __init__(self, server: KvrocksStandIn, client, backend, backend_socket: socket.socket):
        self.server = server
        self.client = client
        self.backend = backend
        self.backend_socket = backend_socket
        self.authenticated = server.password is None

    def forward(self, args: list[bytes]) -> bytes:
        self.backend_socket.sendall(_command(args))
        return read_reply(self.backend)

    def answer(self, args: list[bytes]) -> bytes:
        name = args[0].decode(errors="replace").lower()
        server = self.server
        server.commands[name] += 1
        if name not in KVROCKS_2_7_COMMANDS:
            return _error(f"ERR unknown command {args[0].decode(errors='replace')}")
        if not self.authenticated and name not in ("auth", "hello"):
            return _error("NOAUTH Authentication required.")
        if name == "auth":
            return self._auth(args[1:]) if len(args) == 2 else _error("ERR wrong number of arguments")
        if name == "hello":
            return self._hello(args[1:])
        if name == "client" and not _client_subcommand_ok(args):
            return _error("ERR Syntax error, try CLIENT LIST|INFO|KILL ip:port|GETNAME|SETNAME")
        if name in WRITES:
            if server.full:
                return FULL_REPLY
            self._count_write(name, args)
        return self.forward(args)

    def _auth(self, args: list[bytes]) -> bytes:
        password = self.server.password
        if password is None:
            return _error("ERR Client sent AUTH, but no password is set")
        if args[-1].decode(errors="replace") != password:
            return _error(f"ERR {self.server.auth_error}")
        self.authenticated = True
        return b"+OK\r\n"

    def _hello(self, args: list[bytes]) -> bytes:
        if args:
            try:
                protocol = int(args[0])
            except ValueError:
                return _error("ERR Protocol version is not an integer or out of range")
            if protocol < 2 or protocol > 3:
                return _error("ERR -NOPROTO unsupported protocol version")
        options = args[1:]
        index = 0
        while index < len(options):
            option, more = options[index].lower(), len(options) - index - 1
            if option == b"auth" and more:
                if more in (2, 4):
                    if options[index + 1] != b"default":
                        return _error(f"ERR {self.server.auth_error}")
                    index += 1
                reply = self._auth([options[index + 1]])
                if reply != b"+OK\r\n":
                    return reply
                index += 2
            elif option == b"setname" and more:
                index += 2
            else:
                return _error(f"ERR Syntax error in HELLO option {option.decode(errors='replace')}")
        return HELLO_REPLY

    def _count_write(self, name: str, args: list[bytes]) -> None:
        written = self.server.written
        if name == "set":
            written["set"] += len(args[1]) + len(args[2])
        elif name in ("expire", "pexpire", "expireat", "pexpireat"):
            self.server.expired[args[1].decode(errors="replace")] += 1
            length = int(self.forward([b"STRLEN", args[1]])[1:-2])
            if length:
                written["expire"] += len(args[1]) + length
        elif name in ("del", "unlink"):
            written["del"] += sum(len(key) for key in args[1:])


def _client_subcommand_ok(args: list[bytes]) -> bool:
    sub = args[1].lower() if len(args) > 1 else b""
    return (
        (sub in (b"id", b"getname", b"list", b"info") and len(args) == 2)
        or (sub == b"setname" and len(args) == 3)
        or (sub == b"kill" and len(args) > 2)
    )
