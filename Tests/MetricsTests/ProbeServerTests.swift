import Foundation
import TestSupport
import Testing

@testable import TesseraMetrics

@Suite("Probe server: /metrics, /healthz, /readyz over plain sockets")
struct ProbeServerTests {
    func server(
        _ vitals: ServiceVitals, maxStall: Double = 15, aliveWhileStarting: Bool = false,
        extra: (@Sendable () -> (ready: Bool, detail: String))? = nil
    ) throws -> ProbeServer {
        let exporter = MetricsExporter()
        exporter.factory.makeCounter(label: MetricName.tasksDone, dimensions: []).increment(by: 7)
        let s = try ProbeServer(
            address: MetricsAddress(host: "127.0.0.1", port: 0),
            handler: ProbeRoutes.handler(
                exporter: exporter, vitals: vitals, maxStallSeconds: maxStall,
                aliveWhileStarting: aliveWhileStarting, extraReadiness: extra))
        s.start()
        return s
    }

    @Test("routes answer: metrics parse, health follows the loop, readiness follows the service")
    func routes() throws {
        let vitals = ServiceVitals()
        let ready = LockedFlag()
        let s = try server(vitals, extra: { (ready.value, ready.value ? "store writable" : "store read-only") })
        defer { s.stop() }
        let port = Int(s.address.port)
        #expect(port != 0)
        let metrics = try httpGet(port: port, path: "/metrics")
        #expect(metrics.status == 200)
        #expect(try PrometheusText(metrics.body).value(MetricName.tasksDone) == 7)
        #expect(try httpGet(port: port, path: "/healthz").status == 200)
        #expect(try httpGet(port: port, path: "/readyz").status == 503)
        vitals.setReady(true, "endpoints bound")
        let notWritable = try httpGet(port: port, path: "/readyz")
        #expect(notWritable.status == 503 && notWritable.body.contains("read-only"), "\(notWritable)")
        ready.value = true
        #expect(try httpGet(port: port, path: "/readyz?verbose=1").status == 200)
        #expect(try httpGet(port: port, path: "/nope").status == 404)
        #expect(try httpExchange(port: port, request: "POST /metrics HTTP/1.1\r\n\r\n").status == 405)
        #expect(try httpExchange(port: port, request: "garbage\r\n\r\n").status == 400)
        let huge = "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 20_000) + "\r\n\r\n"
        #expect(try httpExchange(port: port, request: huge).status == 431)
    }

    @Test("a stalled loop fails /healthz with the stall")
    func stalled() throws {
        let vitals = ServiceVitals()
        let s = try server(vitals, maxStall: 0.2)
        defer { s.stop() }
        usleep(300_000)
        let reply = try httpGet(port: Int(s.address.port), path: "/healthz")
        #expect(reply.status == 503 && reply.body.contains("stalled"), "\(reply)")
        vitals.tick()
        #expect(try httpGet(port: Int(s.address.port), path: "/healthz").status == 200)
    }

    /// Deploy audit 51 F2: a coordinator reading a large store back does not tick its loop; its liveness probe
    /// said "stalled" and Kubernetes restarted it mid-resume, over and over. Until first ready it is alive.
    @Test("a coordinator that has not been ready yet is alive however long its start takes; afterwards a stall fails")
    func aliveWhileStarting() throws {
        let vitals = ServiceVitals()
        let s = try server(vitals, maxStall: 0.2, aliveWhileStarting: true)
        defer { s.stop() }
        vitals.setReady(false, "reading the store back (3 of 100 jobs)")
        usleep(300_000)
        let starting = try httpGet(port: Int(s.address.port), path: "/healthz")
        #expect(starting.status == 200 && starting.body.contains("3 of 100 jobs"), "\(starting)")
        #expect(try httpGet(port: Int(s.address.port), path: "/readyz").status == 503)
        vitals.setReady(true, "endpoints bound")
        vitals.setReady(false, "stopping")
        usleep(300_000)
        let stalled = try httpGet(port: Int(s.address.port), path: "/healthz")
        #expect(stalled.status == 503 && stalled.body.contains("stalled"), "\(stalled)")
    }

    /// Found by an operator audit: 16 idle connections from one peer (reopened as they
    /// were closed) made every probe fail, so the kubelet restarted the pod. A peer now
    /// holds at most 4; the rest are closed at once.
    @Test("idle connections from one peer do not hold up another's probes; a busy port is a clear error")
    func silentClients() throws {
        let vitals = ServiceVitals()
        let s = try server(vitals)
        defer { s.stop() }
        let port = Int(s.address.port)
        var idle: [Int32] = []
        defer { for fd in idle { close(fd) } }
        for _ in 0..<40 { idle.append(idleTCPConnection(to: port, from: "127.0.0.2")) }
        usleep(200_000)
        for _ in 0..<5 {
            let start = Date()
            #expect(try httpGet(port: port, path: "/healthz").status == 200)
            #expect(Date().timeIntervalSince(start) < 1)
        }
        #expect(throws: MetricsError.self) {
            try ProbeServer(address: MetricsAddress(host: "127.0.0.1", port: UInt16(port)), handler: { _ in nil })
        }
    }
}

final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    var value: Bool {
        get { lock.withLock { flag } }
        set { lock.withLock { flag = newValue } }
    }
}
