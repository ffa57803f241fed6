import Logging

/// Logs where the metrics endpoint listens, loudly when other machines can reach it:
/// it needs no key, and its metrics name workers and show the cluster's activity.
package func warnIfExposed(_ address: MetricsAddress, _ logger: Logger) {
    if address.isLoopback {
        logger.info("metrics and probes served", metadata: ["address": "http://\(address)"])
    } else {
        logger.warning(
            "metrics and probes served on \(address) WITHOUT AUTHENTICATION: anyone who can reach it reads the metrics (worker names, job counts). Keep it on a trusted network."
        )
    }
}
