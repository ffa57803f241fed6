import CoreMetrics
import Foundation
import TestSupport
import Testing

@testable import TesseraMetrics

@Suite("Metrics exporter: swift-metrics recorded into swift-prometheus")
struct ExporterTests {
    @Test("counters and gauges recorded through swift-metrics appear with their help and type")
    func recordsAndRenders() throws {
        let exporter = MetricsExporter()
        let factory = exporter.factory
        factory.makeCounter(label: MetricName.tasksDone, dimensions: []).increment(by: 3)
        factory.makeCounter(label: MetricName.refusals, dimensions: [("reason", "not-assigned")]).increment(by: 1)
        factory.makeRecorder(label: MetricName.jobs, dimensions: [("state", "running")], aggregate: false).record(
            Int64(2))
        let parsed = try PrometheusText(exporter.render())
        #expect(parsed.value(MetricName.tasksDone) == 3)
        #expect(parsed.value(MetricName.refusals, ["reason": "not-assigned"]) == 1)
        #expect(parsed.value(MetricName.jobs, ["state": "running"]) == 2)
        #expect(parsed.types[MetricName.tasksDone] == "counter")
        #expect(parsed.types[MetricName.jobs] == "gauge")
        #expect(parsed.help[MetricName.tasksDone] == MetricCatalog.help[MetricName.tasksDone])
        // Measured at export.
        #expect((parsed.value(MetricName.residentBytes) ?? 0) > 1_000_000)
    }

    @Test("the catalog: valid, unique names; counters end in _total; every entry has help")
    func catalogIsValid() {
        var seen = Set<String>()
        for entry in MetricCatalog.entries {
            #expect(PrometheusText.isMetricName(entry.name), "\(entry.name)")
            #expect(seen.insert(entry.name).inserted, "\(entry.name) twice")
            #expect(entry.kind != .counter || entry.name.hasSuffix("_total"), "\(entry.name)")
            #expect(!entry.help.isEmpty)
            for label in entry.labels { #expect(PrometheusText.isLabelName(label)) }
        }
    }

    @Test("metrics addresses: loopback unless a host is given")
    func addresses() throws {
        #expect(try MetricsAddress(parsing: "9090") == MetricsAddress(host: "127.0.0.1", port: 9090))
        #expect(try MetricsAddress(parsing: ":9091") == MetricsAddress(host: "127.0.0.1", port: 9091))
        #expect(try MetricsAddress(parsing: "0.0.0.0:9100") == MetricsAddress(host: "0.0.0.0", port: 9100))
        #expect(try MetricsAddress(parsing: "[::1]:9") == MetricsAddress(host: "::1", port: 9))
        #expect(try MetricsAddress(parsing: "9090").isLoopback)
        #expect(try !MetricsAddress(parsing: "0.0.0.0:1").isLoopback)
        for bad in ["", "host:", "host:99999", "::1:9", "[::1]9", "a:b"] {
            #expect(throws: MetricsError.self, "\(bad)") { try MetricsAddress(parsing: bad) }
        }
    }
}
