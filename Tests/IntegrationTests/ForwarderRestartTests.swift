import Foundation
import Testing

@testable import TesseraCluster
@testable import TestSupport

/// A client that reaches the coordinator through a TCP forwarder (as `kubectl port-forward`, which
/// deploy/README.md suggests), while the coordinator restarts.
@Suite("Through a forwarder: a coordinator restarted mid-upload", .serialized)
struct ForwarderRestartTests {
    /// A forwarder limited to `rate` bytes/s each way; while its target is down it accepts connections and
    /// closes them, as `kubectl port-forward` does.
    static let forwarder = """
        import socket, sys, threading, time
        lp, tp, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d: break
                    b.sendall(d); time.sleep(len(d) / rate)
            except OSError: pass
            for s in (a, b):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass
                s.close()
        srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(('127.0.0.1', lp)); srv.listen(16)
        while True:
            c, _ = srv.accept()
            try: u = socket.create_connection(('127.0.0.1', tp), timeout=2)
            except OSError: c.close(); continue
            u.settimeout(None)
            threading.Thread(target=pump, args=(c, u), daemon=True).start()
            threading.Thread(target=pump, args=(u, c), daemon=True).start()
        """

    @Test("submit goes on once the coordinator is back; the forwarder's closes are not taken for a size limit")
    func uploadSurvivesRestart() throws {
        let cluster = try RestartableCluster("forwarder-restart")
        defer { cluster.group.stop() }
        let group = cluster.group
        // Not one of the cluster's ports, which were free a moment ago too (a clean-clone run got the worker
        // endpoint's port, and the client met the worker endpoint).
        let port = try #require(
            try FaultToleranceTests.freePorts(3).first {
                !cluster.workers.hasSuffix(":\($0)") && !cluster.clients.hasSuffix(":\($0)")
            })
        let target = try #require(Int(cluster.clients.split(separator: ":").last ?? ""))
        _ = try group.start(
            "/usr/bin/env", ["python3", "-c", Self.forwarder, "\(port)", "\(target)", "20000000"], log: "forwarder")
        var coordinator = try cluster.coordinator("coordinator-1")
        // 48 MiB of samples: three 16 MiB parts, each 0.8 s through the forwarder.
        let image = group.directory + "/large.png"
        try ClusterFixture.writeImage(to: image, height: 4096, width: 4096)
        let client = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", "tcp://127.0.0.1:\(port)", "--reconnect-timeout", "60"]
                + ClusterFixture.modelFlags + [
                    "--mode", "dense", "--outputs", "npy", "--out", group.directory + "/out",
                ]
                + [image], log: "client")
        // Killed while a part crosses, started again half a second later (the forwarder meanwhile accepts and
        // closes the client's connections).
        let raw = group.directory + "/store/jobs/1/image.raw"
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let size = (try? FileManager.default.attributesOfItem(atPath: raw)[.size] as? Int) ?? 0
            if size > 0 { break }
            usleep(20_000)
        }
        usleep(300_000)
        kill(coordinator.processIdentifier, SIGKILL)
        #expect(group.wait(coordinator, timeout: 10) != nil)
        usleep(500_000)
        coordinator = try cluster.coordinator("coordinator-2")
        // Audit 46 F5: "closed the connection on receiving this 16 MiB request without answering, twice: it is
        // larger than the coordinator accepts (serve --max-client-message-mib)", exit 1.
        #expect(group.wait(client, timeout: 90) == 0, "\(group.log("client"))\n\(group.log("coordinator-2"))")
        #expect(!group.log("client").contains("larger than the coordinator accepts"), "\(group.log("client"))")
    }
}
