import Foundation

/// The three routes every Tessera process serves with `--metrics-address`:
///
/// - `/metrics`: `MetricsExporter.render()`, Prometheus text format 0.0.4;
/// - `/healthz`: 200 while the main loop goes round (`ServiceVitals.tick`) at least
///   every `maxStallSeconds`, else 503: for a liveness probe. With `aliveWhileStarting`, until the
///   service is first ready the limit is `maxStartingStallSeconds` (a coordinator reading a large store
///   back ticks once per job, and one job's files may take minutes to check on a slow disk: deploy
///   audit 51 F2, a liveness probe restarted it mid-resume, over and over);
/// - `/readyz`: 200 once the service says it is ready and `extraReadiness` (if any)
///   agrees, else 503 with the reason: for a readiness probe.
package enum ProbeRoutes {
    package static let defaultMaxStallSeconds = 15.0
    package static let maxStartingStallSeconds = 600.0

    package static func handler(
        exporter: MetricsExporter, vitals: ServiceVitals, maxStallSeconds: Double = defaultMaxStallSeconds,
        aliveWhileStarting: Bool = false, extraReadiness: (@Sendable () -> (ready: Bool, detail: String))? = nil
    ) -> ProbeServer.Handler {
        exporter.addCollector {
            exporter.factory.makeRecorder(label: MetricName.loopStallSeconds, dimensions: [], aggregate: false)
                .record(vitals.secondsSinceTick)
        }
        return { path in
            switch path {
            case "/metrics":
                return ProbeServer.Response(
                    status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: exporter.render())
            case "/healthz":
                let stall = vitals.secondsSinceTick
                if aliveWhileStarting && stall >= maxStallSeconds && stall < maxStartingStallSeconds
                    && vitals.isStarting
                {
                    return ProbeServer.Response(status: 200, body: "ok: starting (\(vitals.readiness.detail))\n")
                }
                return stall < maxStallSeconds
                    ? ProbeServer.Response(status: 200, body: "ok\n")
                    : ProbeServer.Response(
                        status: 503,
                        body: "stalled: the main loop has not gone round for \(String(format: "%.1f", stall)) s\n")
            case "/readyz":
                var (ready, detail) = vitals.readiness
                if ready, let extra = extraReadiness?() { (ready, detail) = extra }
                return ProbeServer.Response(
                    status: ready ? 200 : 503, body: "\(ready ? "ready" : "not ready"): \(detail)\n")
            default:
                return nil
            }
        }
    }
}
