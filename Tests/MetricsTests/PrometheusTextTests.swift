import Foundation
import TestSupport
import Testing

@Suite("Prometheus text format reader (the check the endpoint tests rely on)")
struct PrometheusTextTests {
    @Test("reads samples, labels with escapes, HELP and TYPE")
    func readsValidText() throws {
        let text = """
            # HELP tessera_jobs Jobs by state.
            # TYPE tessera_jobs gauge
            tessera_jobs{state="running"} 2
            tessera_jobs{state="done"} 5.5
            # TYPE x_total counter
            x_total{reason="a \\"quoted\\" \\\\ one\\n",b="2"} 1e3 1700000000
            up 1

            """
        let parsed = try PrometheusText(text)
        #expect(parsed.value("tessera_jobs", ["state": "running"]) == 2)
        #expect(parsed.total("tessera_jobs") == 7.5)
        #expect(parsed.value("x_total", ["reason": "a \"quoted\" \\ one\n", "b": "2"]) == 1000)
        #expect(parsed.types["x_total"] == "counter")
        #expect(parsed.help["tessera_jobs"] == "Jobs by state.")
        #expect(parsed.value("up") == 1)
    }

    @Test(
        "rejects malformed lines",
        arguments: [
            "1bad_name 1", "name{} ", "name 1 2 3", "name{label=\"x} 1", "name{9x=\"1\"} 1",
            "name{a=\"\\q\"} 1", "name one", "name{a=\"1\",a=\"2\"} 1", "# TYPE name bogus", "na-me 1",
        ])
    func rejectsMalformed(line: String) {
        #expect(throws: PrometheusText.ParseError.self) { try PrometheusText(line + "\n") }
    }
}
