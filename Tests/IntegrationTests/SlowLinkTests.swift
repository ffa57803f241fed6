import Foundation
import Testing

@testable import TesseraWire
@testable import TestSupport

/// A worker behind a link slower than a message per heartbeat deadline (concurrency audit 42 F1): liveness was
/// judged on whole messages, so a task or result that took longer than the deadline to cross made its receiver
/// declare the sender dead, and the task was lost on every try. Large messages now cross as pieces.
@Suite("A slow link between worker and coordinator", .serialized)
struct SlowLinkTests {
    /// A TCP proxy that passes each direction at `rate` bytes/s; prints its port to `portFile`.
    static let proxy = """
        import socket, sys, threading, time
        target, rate, port_file = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
        def relay(src, dst):
            try:
                while True:
                    data = src.recv(8192)
                    if not data:
                        break
                    dst.sendall(data)
                    time.sleep(len(data) / rate)
            except OSError:
                pass
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        with open(port_file + ".tmp", "w") as f:
            f.write(str(listener.getsockname()[1]))
        import os
        os.rename(port_file + ".tmp", port_file)
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=relay, args=(a, b), daemon=True).start()
        """

    @Test(
        "At 1 MB/s with a 0.6 s heartbeat deadline, a 0.5 MB task and a 1.9 MB result cross: the map equals the local one"
    )
    func slowLinkJobCompletes() throws {
        let group = try ProcessGroup("slow-link")
        defer { group.stop() }
        // A 200 ms heartbeat: the 3-beat deadline (0.6 s) is shorter than the task's and the result's crossing.
        let (workers, clients) = try group.startCoordinator(extra: ["--heartbeat-ms", "200"])
        let target = try #require(workers.split(separator: ":").last.flatMap { Int($0) })
        let script = group.directory + "/proxy.py"
        try Self.proxy.write(toFile: script, atomically: true, encoding: .utf8)
        let portFile = group.directory + "/proxy-port"
        _ = try group.start("/usr/bin/env", ["python3", script, "\(target)", "1000000", portFile], log: "proxy")
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: portFile), Date() < deadline { usleep(50_000) }
        let port = try #require(try? String(contentsOfFile: portFile, encoding: .utf8), "\(group.log("proxy"))")
        _ = try group.start(
            "tessera-worker", ["--coordinator", "tcp://127.0.0.1:\(port)", "--threads", "2", "--name", "far"],
            log: "far")
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 400, width: 400)
        let out = group.directory + "/out"
        let submit = try group.submitFixture(clients, image: image, out: out, tile: 400, log: "submit")
        let rc = group.wait(submit, timeout: 120)
        let log = group.log("coordinator")
        #expect(rc == 0, "\(group.log("submit"))\n\(log)\n\(group.log("far"))")
        #expect(!log.contains("silent for"), "\(log)")
        #expect(!group.log("far").contains("coordinator silent"), "\(group.log("far"))")
        let local = try ClusterFixture.localNPY(image: image, mode: .dense, scratch: group.directory)
        let same = ClusterFixture.bytes(out + "/tissue.npy") == local
        #expect(same, "the map differs from the in-process one")
    }
}
