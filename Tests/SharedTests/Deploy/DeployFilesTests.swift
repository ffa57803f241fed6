import Foundation
import Testing

/// Checks deploy/ against the binaries: every `tessera-coordinator` / `tessera-worker`
/// command line in the compose file, the Kubernetes manifests, the systemd units,
/// the container entrypoint and the README's code blocks must use subcommands and
/// flags that the built binaries' real `--help` lists — a flag renamed in code
/// breaks this test. Ports, volumes and variables are cross-checked too.
///
/// YAML is read by Python's PyYAML (`python3 -c 'import yaml'`); the YAML tests are
/// skipped when it is missing.
enum DeployFiles {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let deploy = root.appendingPathComponent("deploy")

    static func path(_ relative: String) -> String { deploy.appendingPathComponent(relative).path }

    static func text(_ relative: String) throws -> String {
        try String(contentsOfFile: path(relative), encoding: .utf8)
    }

    // MARK: Running programs

    /// Runs `executable` with `arguments` (and `environment` added); returns (status, stdout + stderr).
    static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil,
                    environment: [String: String] = [:]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        let input = Pipe()
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static let python: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/python3"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    static let yamlAvailable: Bool = {
        guard let python, let result = try? run(python, ["-c", "import yaml"]) else { return false }
        return result.0 == 0
    }()

    /// Every document of a YAML file, as Foundation JSON objects.
    static func yaml(_ relative: String) throws -> [Any] {
        let script = """
            import json, sys, yaml
            with open(sys.argv[1]) as f:
                json.dump(list(yaml.safe_load_all(f)), sys.stdout)
            """
        let (status, output) = try run(python!, ["-c", script, path(relative)])
        guard status == 0 else { throw DeployError("\(relative): \(output)") }
        return try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [Any] ?? []
    }

    // MARK: The binaries' real flags

    static let coordinatorSubcommands = ["serve", "submit", "status", "cancel", "fetch", "run", "inspect",
                                         "convert", "info", "benchmark"]

    /// The long options listed by `<binary> [subcommand] --help`.
    static func helpFlags(_ binary: String, _ subcommand: String?) throws -> Set<String> {
        let path = ProcessGroup.binary(binary)
        let (status, help) = try run(path, (subcommand.map { [$0] } ?? []) + ["--help"])
        guard status == 0 else { throw DeployError("\(binary) \(subcommand ?? "") --help failed: \(help)") }
        let regex = try NSRegularExpression(pattern: "(?<![A-Za-z0-9-])--[a-z][a-z0-9-]*")
        let range = NSRange(help.startIndex..., in: help)
        return Set(regex.matches(in: help, range: range).map { String(help[Range($0.range, in: help)!]) })
    }

    nonisolated(unsafe) static var helpCache: [String: Set<String>] = [:]
    static let cacheLock = NSLock()

    static func flags(_ binary: String, _ subcommand: String?) throws -> Set<String> {
        let key = "\(binary) \(subcommand ?? "")"
        cacheLock.lock()
        defer { cacheLock.unlock() }
        if let cached = helpCache[key] { return cached }
        let flags = try helpFlags(binary, subcommand)
        helpCache[key] = flags
        return flags
    }

    /// One command line: the binary, the subcommand (coordinator only), its tokens.
    struct Invocation: CustomStringConvertible {
        var binary: String
        var subcommand: String?
        var arguments: [String]
        var origin: String
        var description: String { "\(origin): \(binary) \(subcommand ?? "") \(arguments.joined(separator: " "))" }

        /// The value following `flag`, if any.
        func value(_ flag: String) -> String? {
            guard let i = arguments.firstIndex(of: flag), i + 1 < arguments.count else { return nil }
            return arguments[i + 1]
        }
    }

    /// Checks that `invocation` names a real subcommand and only real flags.
    static func check(_ invocation: Invocation) throws {
        if invocation.binary == "tessera-coordinator" {
            let sub = try #require(invocation.subcommand, "no subcommand in \(invocation)")
            #expect(coordinatorSubcommands.contains(sub), "unknown subcommand in \(invocation)")
        }
        let known = try flags(invocation.binary, invocation.subcommand)
        for token in invocation.arguments where token.hasPrefix("--") {
            let flag = String(token.split(separator: "=", maxSplits: 1)[0])
            #expect(known.contains(flag), "\(flag) is not a flag of `\(invocation.binary) \(invocation.subcommand ?? "")` (\(invocation.origin))")
        }
    }

    /// Builds an invocation from a binary name and the tokens after it.
    static func invocation(_ binary: String, _ tokens: [String], origin: String) -> Invocation {
        var tokens = tokens
        var sub: String? = nil
        if binary == "tessera-coordinator", let first = tokens.first, !first.hasPrefix("-") {
            sub = first
            tokens.removeFirst()
        }
        return Invocation(binary: binary, subcommand: sub, arguments: tokens, origin: origin)
    }

    /// Command lines in shell-like text: backslash continuations joined, each
    /// `tessera-coordinator` / `tessera-worker` word followed by its tokens up to the
    /// end of the line, a comment, or a shell operator.
    static func shellInvocations(_ text: String, origin: String) -> [Invocation] {
        let joined = text.replacingOccurrences(of: "\\\n", with: " ")
        var result: [Invocation] = []
        for line in joined.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            for (i, word) in words.enumerated() {
                // The program itself, a bin/ path to it, or `$BIN/…` (not `svc/tessera-coordinator`).
                let name = (word as NSString).lastPathComponent
                guard name == "tessera-coordinator" || name == "tessera-worker",
                      word == name || word.hasSuffix("bin/\(name)") || word.hasPrefix("$") else { continue }
                var tokens: [String] = []
                for token in words[(i + 1)...] {
                    if ["|", "||", "&&", ";", "#", ">", "2>&1", "&"].contains(token) || token.hasPrefix("#") { break }
                    tokens.append(token.trimmingCharacters(in: CharacterSet(charactersIn: "'\"`")))
                }
                // A bare name (`systemctl enable tessera-coordinator`) is a unit, not a command line.
                if tokens.isEmpty { continue }
                let inv = invocation(name, tokens, origin: origin)
                // `exec tessera-coordinator "$@"` forwards its arguments: nothing to check.
                if let sub = inv.subcommand, sub.hasPrefix("$") { continue }
                result.append(inv)
            }
        }
        return result
    }

    /// Image arguments (`coordinator serve …`, `worker …`) of the entrypoint.
    static func imageInvocation(_ args: [String], origin: String) throws -> Invocation {
        let role = try #require(args.first, "\(origin): empty command")
        #expect(["coordinator", "worker"].contains(role), "\(origin): the entrypoint takes coordinator or worker, not \(role)")
        return invocation("tessera-\(role)", Array(args.dropFirst()), origin: origin)
    }

    /// The port of a `tcp://host:port` endpoint.
    static func port(_ endpoint: String?) -> Int? {
        guard let endpoint, let colon = endpoint.lastIndex(of: ":") else { return nil }
        return Int(endpoint[endpoint.index(after: colon)...])
    }

    static func host(_ endpoint: String?) -> String? {
        guard let endpoint, endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":") else { return nil }
        return String(endpoint[endpoint.index(endpoint.startIndex, offsetBy: 6)..<colon])
    }

    /// The systemd unit's ExecStart= line (continuations joined), split into words.
    static func unitSettings(_ text: String) -> [(key: String, value: String)] {
        text.replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n").compactMap { line in
            let line = line.trimmingCharacters(in: .whitespaces)
            guard !line.hasPrefix("#"), !line.hasPrefix("["), let eq = line.firstIndex(of: "=") else { return nil }
            return (String(line[..<eq]), String(line[line.index(after: eq)...]))
        }
    }
}

struct DeployError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private func dict(_ any: Any?) -> [String: Any] { any as? [String: Any] ?? [:] }
private func list(_ any: Any?) -> [Any] { any as? [Any] ?? [] }
private func strings(_ any: Any?) -> [String] { list(any).map { "\($0)" } }

@Suite("deploy/ files match the binaries", .serialized)
struct DeployFilesTests {
    @Test("The flags test itself: an unknown flag is caught, real ones pass")
    func detectsRenamedFlag() throws {
        let known = try DeployFiles.flags("tessera-coordinator", "serve")
        #expect(known.contains("--worker-endpoint") && known.contains("--store"))
        #expect(!known.contains("--no-such-flag"))
        #expect(try DeployFiles.flags("tessera-worker", nil).contains("--coordinator"))
        let parsed = DeployFiles.shellInvocations("x && tessera-coordinator serve \\\n  --store /s --credit=2 # c\n",
                                                  origin: "t")
        #expect(parsed.count == 1 && parsed[0].subcommand == "serve" && parsed[0].arguments == ["--store", "/s", "--credit=2"])
    }

    @Test("compose.yaml: commands, ports, volumes and the demo's files")
    func compose() throws {
        try #require(DeployFiles.yamlAvailable, "python3 with PyYAML is missing: compose.yaml not checked")
        let doc = dict(try DeployFiles.yaml("compose.yaml").first)
        let services = dict(doc["services"])
        #expect(Set(services.keys) == ["coordinator", "worker", "demo"])

        var invocations: [String: DeployFiles.Invocation] = [:]
        for (name, service) in services {
            let command = strings(dict(service)["command"])
            let inv = try DeployFiles.imageInvocation(command, origin: "compose.yaml service \(name)")
            try DeployFiles.check(inv)
            invocations[name] = inv
        }
        let serve = try #require(invocations["coordinator"])
        #expect(serve.subcommand == "serve")
        let workerPort = try #require(DeployFiles.port(serve.value("--worker-endpoint")))
        let clientPort = try #require(DeployFiles.port(serve.value("--client-endpoint")))
        let published = strings(dict(services["coordinator"])["ports"]).compactMap { Int($0.split(separator: ":").last!) }
        #expect(Set(published) == [workerPort, clientPort])
        // The store flag points at the store volume.
        let store = try #require(serve.value("--store"))
        #expect(strings(dict(services["coordinator"])["volumes"]).contains { $0.hasSuffix(":\(store)") })
        // Workers and the demo reach the coordinator by its service name and the right ports.
        let worker = try #require(invocations["worker"])
        #expect(DeployFiles.host(worker.value("--coordinator")) == "coordinator")
        #expect(DeployFiles.port(worker.value("--coordinator")) == workerPort)
        let demo = try #require(invocations["demo"])
        #expect(demo.subcommand == "submit" && demo.arguments.contains("--wait"))
        #expect(DeployFiles.host(demo.value("--coordinator")) == "coordinator")
        #expect(DeployFiles.port(demo.value("--coordinator")) == clientPort)
        // The demo's files are baked into the image under /opt/tessera from the repository.
        let dockerfile = try DeployFiles.text("docker/Dockerfile")
        #expect(dockerfile.contains("COPY models/demo /opt/tessera/models/demo"))
        #expect(dockerfile.contains("COPY examples/ihc.png /opt/tessera/examples/ihc.png"))
        for file in [demo.value("--model"), demo.value("--weights"), demo.arguments.last].compactMap({ $0 }) {
            #expect(file.hasPrefix("/opt/tessera/"), "\(file)")
            let local = DeployFiles.root.appendingPathComponent(String(file.dropFirst("/opt/tessera/".count))).path
            #expect(FileManager.default.fileExists(atPath: local), "the demo uses \(file): \(local) is missing")
        }
        // The demo's preprocessing is the one models/demo/README.md documents.
        let readme = try String(contentsOf: DeployFiles.root.appendingPathComponent("models/demo/README.md"), encoding: .utf8)
        #expect(readme.contains("--channel-order \(demo.value("--channel-order") ?? "?") --mean \(demo.value("--mean") ?? "?") --scale \(demo.value("--scale") ?? "?")"))
        // The image exposes the ports the coordinator binds.
        #expect(dockerfile.contains("EXPOSE \(workerPort) \(clientPort)"))
    }

    @Test("kubernetes/: every manifest parses; args, probes, ports, volumes and the Service agree")
    func kubernetes() throws {
        try #require(DeployFiles.yamlAvailable, "python3 with PyYAML is missing: kubernetes/ not checked")
        let kustomization = dict(try DeployFiles.yaml("kubernetes/kustomization.yaml").first)
        let resources = strings(kustomization["resources"])
        let onDisk = try FileManager.default.contentsOfDirectory(atPath: DeployFiles.path("kubernetes"))
            .filter { $0.hasSuffix(".yaml") && $0 != "kustomization.yaml" }
        #expect(Set(resources) == Set(onDisk), "kustomization.yaml resources differ from the files")

        var objects: [[String: Any]] = []
        for file in resources {
            for doc in try DeployFiles.yaml("kubernetes/\(file)") { objects.append(dict(doc)) }
        }
        let imageNames = Set(list(kustomization["images"]).map { "\(dict($0)["name"] ?? "")" })
        var services: [String: [String: Any]] = [:]
        for o in objects where o["kind"] as? String == "Service" {
            services["\(dict(o["metadata"])["name"] ?? "")"] = o
        }
        var sawServe = false, sawWorker = false, sawGPU = false, sawSecret = false, sawHPA = false
        for o in objects {
            let kind = o["kind"] as? String ?? ""
            let name = "\(dict(o["metadata"])["name"] ?? "")"
            if kind == "Secret" { sawSecret = true }
            if kind == "HorizontalPodAutoscaler" {
                sawHPA = true
                let target = dict(dict(o["spec"])["scaleTargetRef"])
                #expect(objects.contains { $0["kind"] as? String == target["kind"] as? String
                    && "\(dict($0["metadata"])["name"] ?? "")" == "\(target["name"] ?? "")" }, "HPA target missing")
            }
            guard kind == "StatefulSet" || kind == "Deployment" else { continue }
            let spec = dict(o["spec"])
            let podSpec = dict(dict(spec["template"])["spec"])
            let volumes = list(podSpec["volumes"]).map { "\(dict($0)["name"] ?? "")" }
                + list(spec["volumeClaimTemplates"]).map { "\(dict(dict($0)["metadata"])["name"] ?? "")" }
            for c in list(podSpec["containers"]).map(dict) {
                let origin = "kubernetes \(kind) \(name)"
                #expect(imageNames.contains("\(c["image"] ?? "")"), "\(origin): image not set by kustomization")
                let inv = try DeployFiles.imageInvocation(strings(c["args"]), origin: origin)
                try DeployFiles.check(inv)
                // Probes run the binaries directly.
                for probe in ["readinessProbe", "livenessProbe"] {
                    let exec = strings(dict(dict(c[probe])["exec"])["command"])
                    guard let binary = exec.first else { continue }
                    try DeployFiles.check(DeployFiles.invocation(binary, Array(exec.dropFirst()), origin: "\(origin) \(probe)"))
                }
                #expect(c["readinessProbe"] != nil && c["livenessProbe"] != nil, "\(origin): probes missing")
                // $(VAR) in args must be defined in the container's env.
                let env = Set(list(c["env"]).map { "\(dict($0)["name"] ?? "")" })
                for arg in inv.arguments where arg.hasPrefix("$(") {
                    #expect(env.contains(String(arg.dropFirst(2).dropLast())), "\(origin): \(arg) undefined")
                }
                let mounts = list(c["volumeMounts"]).map(dict)
                for m in mounts { #expect(volumes.contains("\(m["name"] ?? "")"), "\(origin): volume \(m["name"] ?? "") missing") }
                #expect(mounts.contains { "\($0["mountPath"] ?? "")" == "/etc/tessera/keys" }, "\(origin): keys not mounted")
                if inv.subcommand == "serve" {
                    sawServe = true
                    let store = try #require(inv.value("--store"))
                    #expect(mounts.contains { "\($0["mountPath"] ?? "")" == store }, "\(origin): --store is not a mounted volume")
                    let ports = list(c["ports"]).map(dict)
                    let containerPorts = ports.compactMap { $0["containerPort"] as? Int }
                    let workerPort = try #require(DeployFiles.port(inv.value("--worker-endpoint")))
                    let clientPort = try #require(DeployFiles.port(inv.value("--client-endpoint")))
                    #expect(Set(containerPorts) == [workerPort, clientPort])
                    // The Service named like the StatefulSet forwards both ports.
                    let service = try #require(services[name], "no Service \(name)")
                    let portNames = Set(ports.map { "\($0["name"] ?? "")" })
                    for p in list(dict(service["spec"])["ports"]).map(dict) {
                        #expect(portNames.contains("\(p["targetPort"] ?? "")") || containerPorts.contains(p["targetPort"] as? Int ?? -1))
                    }
                    #expect(Set(list(dict(service["spec"])["ports"]).compactMap { dict($0)["port"] as? Int }) == [workerPort, clientPort])
                }
                if inv.binary == "tessera-worker" {
                    sawWorker = true
                    let target = try #require(inv.value("--coordinator"))
                    let host = try #require(DeployFiles.host(target))
                    let service = try #require(services[host], "\(origin): --coordinator names no Service")
                    let coordinatorPorts = list(dict(service["spec"])["ports"]).compactMap { dict($0)["port"] as? Int }
                    #expect(coordinatorPorts.contains(DeployFiles.port(target) ?? -1))
                    let limits = dict(dict(c["resources"])["limits"])
                    if limits["nvidia.com/gpu"] != nil {
                        sawGPU = true
                        #expect(podSpec["nodeSelector"] != nil, "\(origin): GPU worker without a nodeSelector")
                    }
                    #expect(dict(c["resources"])["requests"] != nil, "\(origin): no resource requests")
                }
            }
        }
        #expect(sawServe && sawWorker && sawGPU && sawSecret && sawHPA)
    }

    @Test("systemd units: ExecStart flags exist, variables are defined, binaries in the named paths")
    func systemd() throws {
        let example = try DeployFiles.text("systemd/tessera.env.example")
        let exampleVars = Set(example.split(separator: "\n").compactMap { line -> String? in
            guard !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { return nil }
            return String(line[..<eq])
        })
        for unit in ["tessera-coordinator.service", "tessera-worker@.service"] {
            let settings = DeployFiles.unitSettings(try DeployFiles.text("systemd/\(unit)"))
            let exec = try #require(settings.first { $0.key == "ExecStart" }?.value, "\(unit): no ExecStart")
            let words = exec.split(separator: " ").map(String.init)
            let binaryPath = try #require(words.first)
            #expect(binaryPath.hasPrefix("/usr/local/bin/tessera-"))
            let inv = DeployFiles.invocation((binaryPath as NSString).lastPathComponent, Array(words.dropFirst()),
                                             origin: "systemd/\(unit)")
            try DeployFiles.check(inv)
            let defaults = Set(settings.filter { $0.key == "Environment" }.map { String($0.value.split(separator: "=")[0]) })
            for word in inv.arguments where word.hasPrefix("${") {
                let name = String(word.dropFirst(2).dropLast())
                #expect(defaults.contains(name), "\(unit): \(word) has no Environment= default")
                #expect(exampleVars.contains(name), "\(unit): \(word) is missing from tessera.env.example")
            }
            #expect(settings.contains { $0.key == "DynamicUser" && $0.value == "yes" })
            #expect(settings.contains { $0.key == "ProtectSystem" && $0.value == "strict" })
        }
        // Every variable of the example is used by a unit (no stale names).
        let units = try DeployFiles.text("systemd/tessera-coordinator.service") + DeployFiles.text("systemd/tessera-worker@.service")
        for name in exampleVars { #expect(units.contains("${\(name)}"), "tessera.env.example sets \(name), no unit uses it") }
    }

    @Test("Dockerfile, entrypoint and README: every command line uses real flags")
    func shellText() throws {
        var invocations = DeployFiles.shellInvocations(try DeployFiles.text("docker/entrypoint.sh"), origin: "docker/entrypoint.sh")
        #expect(invocations.contains { $0.subcommand == "status" } && invocations.contains { $0.arguments == ["--info"] })
        // README: the fenced code blocks.
        let readme = try DeployFiles.text("README.md")
        var inCode = false
        var code = ""
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") { inCode.toggle(); code += "\n"; continue }
            if inCode { code += line + "\n" }
        }
        invocations += DeployFiles.shellInvocations(code, origin: "README.md")
        #expect(invocations.count > 3)
        for inv in invocations { try DeployFiles.check(inv) }
        // The Dockerfile's health check goes through the entrypoint's `healthcheck` role.
        let dockerfile = try DeployFiles.text("docker/Dockerfile")
        let entrypoint = try DeployFiles.text("docker/entrypoint.sh")
        #expect(dockerfile.contains("\"healthcheck\"") && entrypoint.contains("healthcheck)"))
    }
}
