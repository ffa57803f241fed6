import Foundation
import Testing

@testable import TesseraCluster
@testable import TesseraMetrics
@testable import TesseraWire
@testable import TestSupport

/// `--metrics-address` on a real coordinator and worker: the counters move with a
/// job, the text parses (and passes `promtool check metrics` where it is installed),
/// and the probes say what Kubernetes needs.
@Suite("Metrics and health endpoints", .serialized)
struct MetricsEndpointTests {
    func metrics(_ port: Int) throws -> PrometheusText {
        let reply = try httpGet(port: port, path: "/metrics")
        #expect(reply.status == 200)
        return try PrometheusText(reply.body)
    }

    /// Waits until `path` answers `status` (up to `timeout` s).
    func waitFor(_ port: Int, _ path: String, status: Int, timeout: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let reply = try? httpGet(port: port, path: path), reply.status == status { return true }
            usleep(100_000)
        }
        return false
    }

    /// Every family has HELP and TYPE, every name is in the catalog.
    func checkFamilies(_ m: PrometheusText, _ who: String) {
        for name in Set(m.samples.map(\.name)) {
            #expect(m.types[name] != nil, "\(who): \(name) has no TYPE")
            #expect(!(m.help[name] ?? "").isEmpty, "\(who): \(name) has no HELP")
            #expect(MetricCatalog.help[name] != nil, "\(who): \(name) is not in MetricCatalog")
        }
    }

    /// `promtool check metrics` on `text`, if promtool is installed (Debian: prometheus).
    func promtool(_ text: String, _ who: String, _ dir: String) throws {
        guard
            let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            print("promtool not installed (Debian package prometheus): \(who)'s metrics checked by the parser only")
            return
        }
        let file = "\(dir)/\(who).prom"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let (status, output) = try runCommand(["/bin/sh", "-c", "\(promtool) check metrics < '\(file)' 2>&1"])
        #expect(status == 0, "promtool check metrics on the \(who)'s metrics: \(output)")
    }

    @Test("a job moves the coordinator's and the worker's counters; the text parses; probes are ready")
    func countersMove() throws {
        let group = try ProcessGroup("metrics")
        defer { group.stop() }
        let (cport, wport) = (try freeLoopbackPort(), try freeLoopbackPort())
        let (workers, clients) = try group.startCoordinator(extra: [
            "--metrics-address", ":\(cport)", "--retention-check-ms", "200",
        ])
        try group.start(
            "tessera-worker",
            ["--coordinator", workers, "--threads", "1", "--name", "w1", "--metrics-address", "\(wport)"], log: "w1")
        #expect(waitFor(cport, "/readyz", status: 200), "\(group.log("coordinator"))")
        #expect(waitFor(wport, "/readyz", status: 200), "the worker never registered: \(group.log("w1"))")
        #expect(try httpGet(port: cport, path: "/healthz").status == 200)
        #expect(try httpGet(port: wport, path: "/healthz").status == 200)
        usleep(700_000)  // gauges are published twice a second
        let before = try metrics(cport)
        #expect(before.value("tessera_tasks_done_total") == 0)
        #expect(before.value("tessera_workers") == 1)

        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let submit = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients] + ClusterFixture.modelFlags + [
                "--mode", "dense", "--tile", "\(ClusterFixture.tile)", "--outputs", "npy", "--wait", "--out",
                group.directory + "/out", image,
            ], log: "submit")
        #expect(group.wait(submit, timeout: 60) == 0, "\(group.log("submit"))\n\(group.log("coordinator"))")
        // Gauges are published twice a second and the store measured every 200 ms.
        usleep(1_200_000)

        let c = try metrics(cport)
        let tasks = try #require(c.value("tessera_tasks_done_total"))
        #expect(tasks >= 1)
        #expect(c.value("tessera_worker_tasks_done_total", ["worker": "w1"]) == tasks)
        #expect((c.value("tessera_worker_busy_seconds_total", ["worker": "w1"]) ?? 0) > 0)
        #expect((c.value("tessera_pixels_mapped_total") ?? 0) >= Double(150 * 190))
        #expect(c.value("tessera_jobs", ["state": "done"]) == 1)
        #expect(c.value("tessera_jobs", ["state": "running"]) == 0)
        #expect(c.value("tessera_tasks", ["state": "queued"]) == 0)
        #expect(c.value("tessera_heartbeat_misses_total") == 0)
        #expect((c.value("tessera_bytes_received_total", ["endpoint": "workers"]) ?? 0) > 150 * 190 * 4)
        #expect(
            (c.value("tessera_bytes_received_total", ["endpoint": "clients"]) ?? 0)
                > before.value("tessera_bytes_received_total", ["endpoint": "clients"]) ?? 0)
        #expect((c.value("tessera_bytes_sent_total", ["endpoint": "workers"]) ?? 0) > 150 * 190 * 3)
        #expect((c.value("tessera_store_bytes") ?? 0) > 0)
        #expect((c.value("process_resident_memory_bytes") ?? 0) > 1_000_000)
        checkFamilies(c, "coordinator")

        let w = try metrics(wport)
        #expect(w.value("tessera_tasks_computed_total", ["outcome": "done"]) == tasks)
        #expect(w.value("tessera_tasks_computed_total", ["outcome": "failed"]) == 0)
        #expect((w.value("tessera_compute_seconds_total") ?? 0) > 0)
        #expect(w.value("tessera_worker_registered") == 1)
        #expect((w.value("tessera_bytes_received_total", ["endpoint": "coordinator"]) ?? 0) > 150 * 190 * 3)
        checkFamilies(w, "worker")

        try promtool(try httpGet(port: cport, path: "/metrics").body, "coordinator", group.directory)
        try promtool(try httpGet(port: wport, path: "/metrics").body, "worker", group.directory)
    }

    @Test("ended jobs (done or cancelled) hold no model bytes: tessera_model_bytes counts active jobs only")
    func endedJobsDropModels() throws {
        let group = try ProcessGroup("metrics-models")
        defer { group.stop() }
        let port = try freeLoopbackPort()
        let (workers, clients) = try group.startCoordinator(extra: ["--metrics-address", ":\(port)"])
        #expect(waitFor(port, "/readyz", status: 200), "\(group.log("coordinator"))")
        let modelSize = Double(
            try FileManager.default.attributesOfItem(atPath: ClusterFixture.prototxt)[.size] as! Int
                + (try FileManager.default.attributesOfItem(atPath: ClusterFixture.weights)[.size] as! Int))
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 70)
        func submit(_ name: String, wait: Bool) throws {
            let p = try group.start(
                "tessera-coordinator",
                ["submit", "--coordinator", clients] + ClusterFixture.modelFlags + [
                    "--mode", "dense", "--tile", "\(ClusterFixture.tile)", "--outputs", "npy", "--out",
                    group.directory + "/\(name)", image,
                ] + (wait ? ["--wait"] : []), log: name)
            #expect(group.wait(p, timeout: 60) == 0, "\(group.log(name))")
        }
        func modelBytes(_ expected: Double) -> Double? {
            // Gauges are published twice a second.
            let deadline = Date().addingTimeInterval(5)
            var value: Double?
            repeat {
                value = try? metrics(port).value("tessera_model_bytes")
                if value == expected { break }
                usleep(100_000)
            } while Date() < deadline
            return value
        }
        // No worker yet: two jobs wait, each holding its model.
        try submit("a", wait: false)
        try submit("b", wait: false)
        #expect(modelBytes(2 * modelSize) == 2 * modelSize)
        let cancel = try group.start("tessera-coordinator", ["cancel", "2", "--coordinator", clients], log: "cancel")
        #expect(group.wait(cancel, timeout: 30) == 0, "\(group.log("cancel"))")
        try group.start("tessera-worker", ["--coordinator", workers, "--threads", "1"], log: "w")
        try submit("c", wait: true)
        try submit("d", wait: true)
        let done = Date().addingTimeInterval(30)
        while (try? metrics(port).value("tessera_jobs", ["state": "done"])) != 3 && Date() < done { usleep(100_000) }
        #expect(try metrics(port).value("tessera_jobs", ["state": "done"]) == 3)
        #expect(modelBytes(0) == 0, "ended jobs still hold their models (\(modelSize) bytes each)")
        // An ended job is still fetchable: the outputs never needed the model.
        let fetch = try group.start(
            "tessera-coordinator", ["fetch", "1", "--out", group.directory + "/fetched", "--coordinator", clients],
            log: "fetch")
        #expect(group.wait(fetch, timeout: 30) == 0, "\(group.log("fetch"))")
    }

    @Test("a worker without a coordinator is alive but not ready; the endpoint is off unless asked for")
    func workerNotReady() throws {
        let group = try ProcessGroup("metrics-unready")
        defer { group.stop() }
        let port = try freeLoopbackPort()
        let unused = try freeLoopbackPort()
        try group.start(
            "tessera-worker",
            ["--coordinator", "tcp://127.0.0.1:\(unused)", "--threads", "1", "--metrics-address", "127.0.0.1:\(port)"],
            log: "w")
        #expect(waitFor(port, "/healthz", status: 200), "\(group.log("w"))")
        let ready = try httpGet(port: port, path: "/readyz")
        #expect(ready.status == 503 && ready.body.contains("not registered"), "\(ready)")
        #expect(try metrics(port).value("tessera_worker_registered") == 0)

        let (status, output) = try runCommand([
            ProcessGroup.binary("tessera-coordinator"), "serve", "--metrics-address", "localhost:notaport",
        ])
        #expect(status != 0 && output.contains("port"), "\(output)")
    }
}
