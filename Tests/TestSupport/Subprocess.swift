import Foundation

/// Runs `arguments` through `/usr/bin/env` (so `python3`, `tiffcp`… are found on the PATH)
/// and returns its exit status and its stdout and stderr together.
package func runCommand(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// Runs this test binary again with only `suite` and `variable=value` in its
/// environment: the child sees the variable, runs the measurement (a fresh process, so
/// its peak memory is its own) and writes `resultPath`. Returns that file's text, or nil
/// with the child's status and output when it wrote none.
package func runProbeChild(
    suite: String, variable: String, value: String, resultPath: String
) throws -> (result: String?, status: Int32, output: String) {
    let child = Process()
    child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
    child.arguments = ["--testing-library", "swift-testing", "--filter", suite]
    child.environment = ProcessInfo.processInfo.environment.merging([variable: value]) { $1 }
    let output = Pipe()
    child.standardOutput = output
    child.standardError = output
    try child.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    child.waitUntilExit()
    return (try? String(contentsOfFile: resultPath, encoding: .utf8), child.terminationStatus, text)
}
