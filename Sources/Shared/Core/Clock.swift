import Dispatch

/// Monotonic seconds (never jumps with the wall clock).
package func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
