import Foundation
import Testing

@testable import TestSupport

/// Checks deploy/ against the binaries: every `tessera-coordinator` / `tessera-worker`
/// command line in the compose file, the Kubernetes manifests, the systemd units,
/// the container entrypoint and the README's code blocks must use subcommands and
/// flags that the built binaries' real `--help` lists — a flag renamed in code
/// breaks this test. Ports, volumes and variables are cross-checked too.
///
/// YAML is read by Python's PyYAML (`python3 -c 'import yaml'`); the YAML tests are
/// skipped when it is missing.
enum DeployFiles {
    static let root = TestPaths.packageRoot
    static let deploy = root.appendingPathComponent("deploy")

    static func path(_ relative: String) -> String { deploy.appendingPathComponent(relative).path }

    static func text(_ relative: String) throws -> String {
        try String(contentsOfFile: path(relative), encoding: .utf8)
    }

    // MARK: Running programs

    /// Runs `executable` with `arguments` (and `environment` added); returns (status, stdout + stderr).
    static func run(
        _ executable: String, _ arguments: [String], stdin: Data? = nil,
        environment: [String: String] = [:]
    ) throws -> (Int32, String) {
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

    static let coordinatorSubcommands = [
        "serve", "submit", "status", "cancel", "fetch", "run", "inspect",
        "convert", "info", "benchmark", "keygen", "export", "inspect-image", "gpu-check",
    ]

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

    /// The environment variables `<binary> [subcommand] --help` lists, each with its
    /// flag: `TESSERA_WORKER_ENDPOINT` → `--worker-endpoint`.
    static func helpVariables(_ binary: String, _ subcommand: String?) throws -> [String: String] {
        let (status, help) = try run(ProcessGroup.binary(binary), (subcommand.map { [$0] } ?? []) + ["--help"])
        guard status == 0 else { throw DeployError("\(binary) \(subcommand ?? "") --help failed: \(help)") }
        var result: [String: String] = [:]
        var flag: String?
        for line in help.split(separator: "\n") {
            let body = line.drop { $0 == " " }
            // Option lines are indented by 2; deeper lines continue a description.
            if body.hasPrefix("-"), line.count - body.count <= 4 {
                flag = body.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "/" }).map(String.init)
                    .first { $0.hasPrefix("--") }
            } else if body.hasPrefix("(env: "), let flag {
                result[String(body.dropFirst(6).prefix { $0 != ")" })] = flag
            }
        }
        return result
    }

    nonisolated(unsafe) static var variableCache: [String: [String: String]] = [:]

    static func variables(_ binary: String, _ subcommand: String?) throws -> [String: String] {
        let key = "\(binary) \(subcommand ?? "")"
        cacheLock.lock()
        defer { cacheLock.unlock() }
        if let cached = variableCache[key] { return cached }
        let variables = try helpVariables(binary, subcommand)
        variableCache[key] = variables
        return variables
    }

    /// One command line: the binary, the subcommand (coordinator only), its tokens.
    struct Invocation: CustomStringConvertible {
        var binary: String
        var subcommand: String?
        var arguments: [String]
        var origin: String
        /// The program's environment variables (container `env`, compose `environment`).
        var environment: [String: String] = [:]
        var description: String { "\(origin): \(binary) \(subcommand ?? "") \(arguments.joined(separator: " "))" }

        /// The value of `flag`: the token after it, else its environment variable's value.
        func value(_ flag: String) -> String? {
            if let i = arguments.firstIndex(of: flag) { return i + 1 < arguments.count ? arguments[i + 1] : nil }
            let variables = (try? DeployFiles.variables(binary, subcommand)) ?? [:]
            return variables.first { $0.value == flag }.flatMap { environment[$0.key] }
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
            #expect(
                known.contains(flag),
                "\(flag) is not a flag of `\(invocation.binary) \(invocation.subcommand ?? "")` (\(invocation.origin))")
        }
        try checkVariables(
            Array(invocation.environment.keys), of: invocation.binary, [invocation.subcommand],
            origin: invocation.origin)
    }

    /// Checks that every `TESSERA_*` name is a variable that `binary` (one of
    /// `subcommands`) really reads, according to its `--help`.
    static func checkVariables(_ names: [String], of binary: String, _ subcommands: [String?], origin: String) throws {
        var real: [String: String] = [:]
        for sub in subcommands { real.merge(try variables(binary, sub)) { a, _ in a } }
        for name in names where name.hasPrefix("TESSERA_") {
            #expect(
                real[name] != nil, "\(origin): \(name) is not a variable of `\(binary) \(subcommands.map { $0 ?? "" })`"
            )
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
                    word == name || word.hasSuffix("bin/\(name)") || word.hasPrefix("$")
                else { continue }
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
        #expect(
            ["coordinator", "worker"].contains(role),
            "\(origin): the entrypoint takes coordinator or worker, not \(role)")
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
        // Variables come from the real --help: a renamed flag renames its variable.
        #expect(try DeployFiles.variables("tessera-worker", nil)["TESSERA_WORKER_COORDINATOR"] == "--coordinator")
        #expect(
            try DeployFiles.variables("tessera-coordinator", "serve")["TESSERA_WORKER_ENDPOINT"] == "--worker-endpoint")
        #expect(
            try DeployFiles.variables("tessera-coordinator", "status")["TESSERA_CLIENT_COORDINATOR"] == "--coordinator")
        #expect(try DeployFiles.variables("tessera-worker", nil)["TESSERA_COORDINATOR"] == nil)
        let env = DeployFiles.Invocation(
            binary: "tessera-worker", subcommand: nil, arguments: [], origin: "t",
            environment: ["TESSERA_WORKER_COORDINATOR": "tcp://c:5555"])
        #expect(env.value("--coordinator") == "tcp://c:5555")
        let parsed = DeployFiles.shellInvocations(
            "x && tessera-coordinator serve \\\n  --store /s --credit=2 # c\n",
            origin: "t")
        #expect(
            parsed.count == 1 && parsed[0].subcommand == "serve"
                && parsed[0].arguments == ["--store", "/s", "--credit=2"])
    }

    @Test("compose.yaml: commands, variables, ports, volumes, keys and the demo's files")
    func compose() throws {
        try #require(DeployFiles.yamlAvailable, "python3 with PyYAML is missing: compose.yaml not checked")
        let doc = dict(try DeployFiles.yaml("compose.yaml").first)
        let services = dict(doc["services"])
        #expect(Set(services.keys) == ["keys", "coordinator", "worker", "demo"])

        var invocations: [String: DeployFiles.Invocation] = [:]
        for (name, service) in services where name != "keys" {
            let command = strings(dict(service)["command"])
            var inv = try DeployFiles.imageInvocation(command, origin: "compose.yaml service \(name)")
            inv.environment = dict(dict(service)["environment"]).mapValues { "\($0)" }
            // The coordinator's container also runs the health check, a `status` client.
            if inv.subcommand == "serve" {
                try DeployFiles.checkVariables(
                    Array(inv.environment.keys), of: inv.binary, ["serve", "status"], origin: inv.origin)
                var flagsOnly = inv
                flagsOnly.environment = [:]
                try DeployFiles.check(flagsOnly)
            } else {
                try DeployFiles.check(inv)
            }
            invocations[name] = inv
            // Every key file a variable names lies in a folder mounted into this service.
            let mounts = strings(dict(service)["volumes"]).map { $0.split(separator: ":").map(String.init) }
            for (variable, value) in inv.environment where value.hasPrefix("/etc/tessera/") {
                #expect(
                    mounts.contains { $0.count >= 2 && value.hasPrefix($0[1] + "/") || value == $0[1] },
                    "compose.yaml \(name): \(variable)=\(value) is not in a mounted folder")
            }
        }
        // The keys service runs keygen (real flags) into the folders the others mount.
        let keys = dict(services["keys"])
        let script = strings(keys["command"]).joined(separator: "\n")
        let keygens = DeployFiles.shellInvocations(script, origin: "compose.yaml service keys")
        #expect(!keygens.isEmpty && keygens.allSatisfy { $0.subcommand == "keygen" })
        for inv in keygens { try DeployFiles.check(inv) }
        #expect(strings(keys["volumes"]) == ["./keys:/keys"])
        for name in ["coordinator", "worker", "demo"] {
            for volume in strings(dict(services[name])["volumes"]) where volume.hasPrefix("./keys/") {
                let folder = String(volume.dropFirst("./keys/".count).prefix { $0 != ":" })
                #expect(script.contains(folder), "compose.yaml: the keys service never fills keys/\(folder)")
            }
        }

        let serve = try #require(invocations["coordinator"])
        #expect(serve.subcommand == "serve")
        #expect(serve.value("--curve") == "true", "compose.yaml: the coordinator does not use CURVE")
        #expect(
            serve.value("--worker-keys") != nil && serve.value("--admin-keys") != nil,
            "compose.yaml: CURVE without roles (worker and admin keys)")
        let workerPort = try #require(DeployFiles.port(serve.value("--worker-endpoint")))
        let clientPort = try #require(DeployFiles.port(serve.value("--client-endpoint")))
        let published = strings(dict(services["coordinator"])["ports"]).compactMap {
            Int($0.split(separator: ":").last!)
        }
        // Metrics as in the Kubernetes manifests: on beyond the container's loopback, the
        // coordinator's port published on the host's loopback, a worker's only exposed (they
        // scale), and each container's health check is the entrypoint's HTTP probe.
        let metricsPort = try #require(
            DeployFiles.port(serve.value("--metrics-address")), "compose.yaml: the coordinator has no metrics")
        #expect(Set(published) == [workerPort, clientPort, metricsPort])
        #expect(strings(dict(services["coordinator"])["ports"]).allSatisfy { $0.hasPrefix("127.0.0.1:") })
        for name in ["coordinator", "worker"] {
            let inv = try #require(invocations[name])
            let address = try #require(inv.value("--metrics-address"), "compose.yaml \(name): no --metrics-address")
            #expect(!address.hasPrefix("127.") && !address.hasPrefix(":"), "compose.yaml \(name): metrics on loopback")
            let test = strings(dict(dict(services[name])["healthcheck"])["test"])
            #expect(
                test == ["CMD", "/usr/local/bin/tessera-entrypoint", "healthcheck"], "compose.yaml \(name): \(test)")
        }
        let workerMetrics = DeployFiles.port(try #require(invocations["worker"]).value("--metrics-address"))
        #expect(strings(dict(services["worker"])["expose"]).compactMap { Int($0) } == workerMetrics.map { [$0] })
        #expect(dict(services["worker"])["ports"] == nil, "compose.yaml: scaled workers cannot publish one port")
        // The store flag points at the store volume.
        let store = try #require(serve.value("--store"))
        #expect(strings(dict(services["coordinator"])["volumes"]).contains { $0.hasSuffix(":\(store)") })
        // Workers and the demo reach the coordinator by its service name and the right ports, with CURVE.
        let worker = try #require(invocations["worker"])
        #expect(DeployFiles.host(worker.value("--coordinator")) == "coordinator")
        #expect(DeployFiles.port(worker.value("--coordinator")) == workerPort)
        #expect(worker.value("--curve") == "true")
        let demo = try #require(invocations["demo"])
        #expect(demo.subcommand == "submit" && demo.arguments.contains("--wait"))
        #expect(DeployFiles.host(demo.value("--coordinator")) == "coordinator")
        #expect(DeployFiles.port(demo.value("--coordinator")) == clientPort)
        #expect(demo.value("--curve") == "true")
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
        let readme = try String(
            contentsOf: DeployFiles.root.appendingPathComponent("models/demo/README.md"), encoding: .utf8)
        #expect(
            readme.contains(
                "--channel-order \(demo.value("--channel-order") ?? "?") --mean \(demo.value("--mean") ?? "?") --scale \(demo.value("--scale") ?? "?")"
            ))
        // The image exposes the ports the coordinator binds.
        #expect(dockerfile.contains("EXPOSE \(workerPort) \(clientPort)"))
        // The Dockerfile's ENV names are real variables too.
        for line in dockerfile.split(separator: "\n") where line.hasPrefix("ENV ") {
            let names = line.dropFirst(4).split(separator: " ").map { String($0.split(separator: "=")[0]) }
            try DeployFiles.checkVariables(
                names, of: "tessera-coordinator", ["serve", "run"], origin: "docker/Dockerfile")
        }
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
        try Self.checkKubernetes(objects, imageNames: imageNames)
    }

    /// The shared-storage component, rendered over the manifests by `kubectl kustomize`: the
    /// same checks hold, and the coordinator and every worker mount one ReadWriteMany claim at
    /// the path both take as `--shared-root`.
    @Test("kubernetes/shared-storage: one ReadWriteMany claim at the coordinator's and every worker's --shared-root")
    func kubernetesSharedStorage() throws {
        try #require(DeployFiles.yamlAvailable, "python3 with PyYAML is missing: kubernetes/ not checked")
        let kubectl = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            .map { "\($0)/kubectl" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let kubectl else {
            print("DeployFilesTests: kubectl is missing, kubernetes/shared-storage not rendered")
            return
        }
        // An overlay enabling the component; kustomize takes only relative paths to them.
        let overlay = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-overlay-\(getpid())")
        try FileManager.default.createDirectory(at: overlay, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: overlay) }
        let up = String(repeating: "../", count: overlay.standardizedFileURL.pathComponents.count - 1)
        let base = up + String(DeployFiles.path("kubernetes").dropFirst())
        try "namespace: tessera\nresources:\n  - \(base)\ncomponents:\n  - \(base)/shared-storage\n".write(
            to: overlay.appendingPathComponent("kustomization.yaml"), atomically: true, encoding: .utf8)
        let (status, output) = try DeployFiles.run(kubectl, ["kustomize", overlay.path])
        try #require(status == 0, "kubectl kustomize: \(output)")
        let script = "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)"
        let (parsed, json) = try DeployFiles.run(DeployFiles.python!, ["-c", script], stdin: Data(output.utf8))
        try #require(parsed == 0, "\(json)")
        let rendered = (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [Any] ?? []).map(dict)
        // kustomize leaves the key Secrets out (local-config) and writes each image with its tag.
        let secrets = try DeployFiles.yaml("kubernetes/secret-keys.yaml").map(dict)
        let objects = rendered + secrets
        let kustomization = dict(try DeployFiles.yaml("kubernetes/kustomization.yaml").first)
        let images = list(kustomization["images"]).map(dict).map { "\($0["name"] ?? ""):\($0["newTag"] ?? "")" }
        try Self.checkKubernetes(objects, imageNames: Set(images))

        let claims = objects.filter { $0["kind"] as? String == "PersistentVolumeClaim" }
        #expect(claims.count == 1)
        let claim = try #require(claims.first)
        let claimName = "\(dict(claim["metadata"])["name"] ?? "")"
        #expect(strings(dict(claim["spec"])["accessModes"]) == ["ReadWriteMany"])
        #expect("\(dict(claim["metadata"])["namespace"] ?? "")" == "tessera")
        var roots: [String: String] = [:]
        for o in objects where ["StatefulSet", "Deployment"].contains(o["kind"] as? String ?? "") {
            let name = "\(dict(o["metadata"])["name"] ?? "")"
            let podSpec = dict(dict(dict(o["spec"])["template"])["spec"])
            let shared = list(podSpec["volumes"]).map(dict).filter {
                "\(dict($0["persistentVolumeClaim"])["claimName"] ?? "")" == claimName
            }
            let volume = try #require(shared.first, "\(name) does not mount the shared claim")
            for c in list(podSpec["containers"]).map(dict) {
                var inv = try DeployFiles.imageInvocation(strings(c["args"]), origin: name)
                for variable in list(c["env"]).map(dict) {
                    inv.environment["\(variable["name"] ?? "")"] = "\(variable["value"] ?? "")"
                }
                let root = try #require(inv.value("--shared-root"), "\(name): no --shared-root")
                let mount = list(c["volumeMounts"]).map(dict).first {
                    "\($0["name"] ?? "")" == "\(volume["name"] ?? "")"
                }
                #expect(
                    "\(mount?["mountPath"] ?? "")" == root, "\(name): --shared-root \(root) is not the claim's mount")
                #expect(mount?["readOnly"] as? Bool != true, "\(name): workers and coordinator both write maps there")
                roots[name] = root
            }
        }
        #expect(Set(roots.keys) == ["tessera-coordinator", "tessera-worker", "tessera-worker-gpu"], "\(roots)")
        #expect(Set(roots.values).count == 1, "one path on every pod: \(roots)")
    }

    /// The manifests' checks: args and variables are real flags, probes, ports, volumes, Secrets
    /// and Services agree.
    static func checkKubernetes(_ objects: [[String: Any]], imageNames: Set<String>) throws {
        var services: [String: [String: Any]] = [:]
        for o in objects where o["kind"] as? String == "Service" {
            services["\(dict(o["metadata"])["name"] ?? "")"] = o
        }
        var sawServe = false, sawWorker = false, sawGPU = false, sawSecret = false, sawHPA = false
        for o in objects {
            let kind = o["kind"] as? String ?? ""
            let name = "\(dict(o["metadata"])["name"] ?? "")"
            if kind == "Secret" {
                sawSecret = true
                // Key Secrets are made by hand (kubectl create): `apply -k` must never output, and so
                // empty, them (operator audit: a three-way merge wiped the keys).
                let annotations = dict(dict(o["metadata"])["annotations"])
                #expect(
                    "\(annotations["config.kubernetes.io/local-config"] ?? "")" == "true"
                        && o["data"] == nil && o["stringData"] == nil,
                    "Secret \(name) would be applied, and its keys replaced, by apply -k")
            }
            if kind == "HorizontalPodAutoscaler" {
                sawHPA = true
                let target = dict(dict(o["spec"])["scaleTargetRef"])
                #expect(
                    objects.contains {
                        $0["kind"] as? String == target["kind"] as? String
                            && "\(dict($0["metadata"])["name"] ?? "")" == "\(target["name"] ?? "")"
                    }, "HPA target missing")
                // A replica count in the target fights the autoscaler on every apply.
                let scaled = objects.first { "\(dict($0["metadata"])["name"] ?? "")" == "\(target["name"] ?? "")" }
                #expect(dict(scaled?["spec"])["replicas"] == nil, "\(target["name"] ?? ""): replicas fights the HPA")
            }
            guard kind == "StatefulSet" || kind == "Deployment" else { continue }
            let spec = dict(o["spec"])
            let podSpec = dict(dict(spec["template"])["spec"])
            let volumes =
                list(podSpec["volumes"]).map { "\(dict($0)["name"] ?? "")" }
                + list(spec["volumeClaimTemplates"]).map { "\(dict(dict($0)["metadata"])["name"] ?? "")" }
            for c in list(podSpec["containers"]).map(dict) {
                let origin = "kubernetes \(kind) \(name)"
                #expect(imageNames.contains("\(c["image"] ?? "")"), "\(origin): image not set by kustomization")
                var inv = try DeployFiles.imageInvocation(strings(c["args"]), origin: origin)
                let envList = list(c["env"]).map(dict)
                inv.environment = Dictionary(
                    envList.map {
                        (
                            "\($0["name"] ?? "")",
                            "\($0["value"] ?? "(from \($0["valueFrom"] != nil ? "valueFrom" : "?"))")"
                        )
                    }
                ) { a, _ in a }
                if inv.subcommand == "serve" {
                    // The liveness probe (`status`) reads the client variables of the same container.
                    try DeployFiles.checkVariables(
                        Array(inv.environment.keys), of: inv.binary, ["serve", "status"], origin: origin)
                    var flagsOnly = inv
                    flagsOnly.environment = [:]
                    try DeployFiles.check(flagsOnly)
                    #expect(inv.value("--curve") == "true", "\(origin): no CURVE")
                    // Roles: only worker keys join as workers; admin keys see every job.
                    #expect(
                        inv.environment["TESSERA_WORKER_KEYS"] != nil && inv.environment["TESSERA_ADMIN_KEYS"] != nil,
                        "\(origin): CURVE without roles")
                } else {
                    try DeployFiles.check(inv)
                }
                // Probes run the binaries directly.
                for probe in ["readinessProbe", "livenessProbe"] {
                    let exec = strings(dict(dict(c[probe])["exec"])["command"])
                    guard let binary = exec.first else { continue }
                    try DeployFiles.check(
                        DeployFiles.invocation(binary, Array(exec.dropFirst()), origin: "\(origin) \(probe)"))
                }
                #expect(c["readinessProbe"] != nil && c["livenessProbe"] != nil, "\(origin): probes missing")
                try Self.checkMetrics(c, inv, template: dict(spec["template"]), origin: origin)
                // $(VAR) in args must be defined in the container's env.
                let env = Set(list(c["env"]).map { "\(dict($0)["name"] ?? "")" })
                for arg in inv.arguments where arg.hasPrefix("$(") {
                    #expect(env.contains(String(arg.dropFirst(2).dropLast())), "\(origin): \(arg) undefined")
                }
                let mounts = list(c["volumeMounts"]).map(dict)
                for m in mounts {
                    #expect(volumes.contains("\(m["name"] ?? "")"), "\(origin): volume \(m["name"] ?? "") missing")
                }
                #expect(
                    mounts.contains { "\($0["mountPath"] ?? "")" == "/etc/tessera/keys" }, "\(origin): keys not mounted"
                )
                // Key files named by variables lie in mounted Secrets that exist.
                let secretNames = Set(
                    objects.filter { $0["kind"] as? String == "Secret" }.map { "\(dict($0["metadata"])["name"] ?? "")" }
                )
                for (variable, value) in inv.environment where value.hasPrefix("/etc/tessera/") {
                    let mount = mounts.first {
                        value.hasPrefix("\($0["mountPath"] ?? "")/") || value == "\($0["mountPath"] ?? "")"
                    }
                    let m = try #require(mount, "\(origin): \(variable)=\(value) is not in a mounted volume")
                    let volume = list(podSpec["volumes"]).map(dict).first {
                        "\($0["name"] ?? "")" == "\(m["name"] ?? "")"
                    }
                    let secret = "\(dict(volume?["secret"])["secretName"] ?? "")"
                    #expect(
                        secretNames.contains(secret),
                        "\(origin): \(variable) reads Secret \(secret), which is not defined")
                }
                if inv.subcommand == "serve" {
                    sawServe = true
                    let store = try #require(inv.value("--store"))
                    #expect(
                        mounts.contains { "\($0["mountPath"] ?? "")" == store },
                        "\(origin): --store is not a mounted volume")
                    let ports = list(c["ports"]).map(dict)
                    let containerPorts = ports.compactMap { $0["containerPort"] as? Int }
                    let workerPort = try #require(DeployFiles.port(inv.value("--worker-endpoint")))
                    let clientPort = try #require(DeployFiles.port(inv.value("--client-endpoint")))
                    let metricsPort = DeployFiles.port(inv.value("--metrics-address"))
                    #expect(Set(containerPorts) == Set([workerPort, clientPort] + (metricsPort.map { [$0] } ?? [])))
                    // The StatefulSet's governing Service is headless (it gives the pod its DNS name).
                    let governing = try #require(
                        services["\(spec["serviceName"] ?? "")"], "\(origin): no serviceName Service")
                    #expect(
                        "\(dict(governing["spec"])["clusterIP"] ?? "")" == "None",
                        "\(origin): serviceName is not headless")
                    // The Service named like the StatefulSet forwards both ports.
                    let service = try #require(services[name], "no Service \(name)")
                    let portNames = Set(ports.map { "\($0["name"] ?? "")" })
                    for p in list(dict(service["spec"])["ports"]).map(dict) {
                        #expect(
                            portNames.contains("\(p["targetPort"] ?? "")")
                                || containerPorts.contains(p["targetPort"] as? Int ?? -1))
                    }
                    #expect(
                        Set(list(dict(service["spec"])["ports"]).compactMap { dict($0)["port"] as? Int }) == [
                            workerPort, clientPort,
                        ])
                }
                if inv.binary == "tessera-worker" {
                    sawWorker = true
                    #expect(inv.value("--curve") == "true", "\(origin): no CURVE")
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

    /// A container with `--metrics-address` listens beyond loopback on a declared
    /// port, its HTTP probes use /healthz (liveness) and /readyz (readiness) on that
    /// port, and its pod's scrape annotations name it.
    static func checkMetrics(
        _ c: [String: Any], _ inv: DeployFiles.Invocation, template: [String: Any], origin: String
    ) throws {
        guard let address = inv.value("--metrics-address") else { return }
        let port = try #require(DeployFiles.port(address), "\(origin): --metrics-address \(address) has no port")
        #expect(!address.hasPrefix("127.") && !address.hasPrefix(":"), "\(origin): metrics on loopback only")
        let ports = list(c["ports"]).map(dict)
        let declared = try #require(
            ports.first { $0["containerPort"] as? Int == port }, "\(origin): metrics port \(port) not declared")
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = dict(dict(c[probe])["httpGet"])
            #expect("\(get["path"] ?? "")" == path, "\(origin): \(probe) is not an HTTP GET of \(path)")
            let target = get["port"]
            #expect(
                (target as? Int) == port || "\(target ?? "")" == "\(declared["name"] ?? "-")",
                "\(origin): \(probe) does not use the metrics port")
        }
        let annotations = dict(dict(template["metadata"])["annotations"])
        #expect("\(annotations["prometheus.io/scrape"] ?? "")" == "true", "\(origin): not scraped")
        #expect("\(annotations["prometheus.io/port"] ?? "")" == "\(port)", "\(origin): scrape port differs")
        #expect("\(annotations["prometheus.io/path"] ?? "/metrics")" == "/metrics")
    }

    @Test("systemd units: ExecStart flags and every variable (also in tessera.env.example) are real")
    func systemd() throws {
        func assignments(_ text: String) -> [String] {
            text.split(separator: "\n").compactMap { line -> String? in
                guard !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { return nil }
                return String(line[..<eq])
            }
        }
        let exampleVars = assignments(try DeployFiles.text("systemd/tessera.env.example"))
        var unitVars: Set<String> = []
        for (unit, sub) in [("tessera-coordinator.service", Optional("serve")), ("tessera-worker@.service", nil)] {
            let text = try DeployFiles.text("systemd/\(unit)")
            let settings = DeployFiles.unitSettings(text)
            let exec = try #require(settings.first { $0.key == "ExecStart" }?.value, "\(unit): no ExecStart")
            let words = exec.split(separator: " ").map(String.init)
            let binaryPath = try #require(words.first)
            #expect(binaryPath.hasPrefix("/usr/local/bin/tessera-"))
            let inv = DeployFiles.invocation(
                (binaryPath as NSString).lastPathComponent, Array(words.dropFirst()),
                origin: "systemd/\(unit)")
            #expect(inv.subcommand == sub)
            try DeployFiles.check(inv)
            // Environment= lines, the commented CURVE ones included: NAME=value words.
            var names: [String] = []
            for line in text.split(separator: "\n") {
                let l = line.hasPrefix("#Environment=") ? line.dropFirst() : line
                guard l.hasPrefix("Environment=") else { continue }
                names += l.dropFirst("Environment=".count).split(separator: " ").map {
                    String($0.split(separator: "=")[0])
                }
            }
            #expect(!names.isEmpty)
            try DeployFiles.checkVariables(names, of: inv.binary, [inv.subcommand], origin: "systemd/\(unit)")
            unitVars.formUnion(names)
            // The commented CURVE lines agree: the credential is the file the variable names.
            let credential = text.split(separator: "\n").first { $0.hasPrefix("#LoadCredential=") }
            let credentialName = try #require(
                credential.map { String($0.dropFirst("#LoadCredential=".count).prefix { $0 != ":" }) })
            #expect(
                text.contains("SECRET_KEY=%d/\(credentialName)"), "\(unit): the credential and the key variable differ")
            for word in inv.arguments where word.hasPrefix("${") {
                #expect(
                    exampleVars.contains(String(word.dropFirst(2).dropLast())),
                    "\(unit): \(word) is missing from tessera.env.example")
            }
            if sub == "serve" {
                // The commented CURVE lines turn roles on too (operator audit: any user key could join as a
                // worker), and the store comes from TESSERA_STORE, so tessera.env can move it.
                #expect(
                    text.contains("TESSERA_WORKER_KEYS=") && text.contains("TESSERA_ADMIN_KEYS="),
                    "\(unit): CURVE without roles")
                #expect(!exec.contains("--store"), "\(unit): --store on ExecStart overrides tessera.env")
            }
            #expect(settings.contains { $0.key == "DynamicUser" && $0.value == "yes" })
            // Permanent errors are not restarted every 2 s until the start limit (operator audit 38 F5).
            #expect(
                settings.contains {
                    $0.key == "RestartPreventExitStatus" && $0.value == (sub == "serve" ? "64" : "64 78")
                }, "\(unit)")
            // Shared storage: one user for both units, and the lines come after DynamicUser=yes, which they
            // override (a dynamic uid per unit refused every worker write: operator audit 38 F1).
            let lines = text.split(separator: "\n").map(String.init)
            let dynamic = try #require(lines.firstIndex(of: "DynamicUser=yes"))
            for line in ["#DynamicUser=no", "#User=tessera", "#Group=tessera", "#ReadWritePaths=/data"] {
                let at = lines.firstIndex(of: line)
                #expect(at.map { $0 > dynamic } == true, "\(unit): \(line) missing or before DynamicUser=yes")
            }
            #expect(settings.contains { $0.key == "ProtectSystem" && $0.value == "strict" })
            // libzmq opens a netlink socket (getifaddrs) when it binds TCP and aborts when refused:
            // a unit without AF_NETLINK failed at every start, which `systemd-analyze verify` cannot
            // see (deploy audit).
            if let families = settings.first(where: { $0.key == "RestrictAddressFamilies" })?.value {
                #expect(families.split(separator: " ").contains("AF_NETLINK"), "\(unit): \(families)")
            }
            // A worker's metrics port is per instance: the shared file must not offer one, even commented
            // out (every instance reading it, all but the first could not listen).
            #expect(!(try DeployFiles.text("systemd/tessera.env.example")).contains("TESSERA_WORKER_METRICS_ADDRESS="))
        }
        // One file for both units: each name is a variable of serve or of the worker, and a unit sets it too.
        let serveVars = try DeployFiles.variables("tessera-coordinator", "serve")
        let workerVars = try DeployFiles.variables("tessera-worker", nil)
        for name in exampleVars {
            #expect(
                serveVars[name] != nil || workerVars[name] != nil,
                "tessera.env.example: \(name) is read by neither unit")
            #expect(unitVars.contains(name), "tessera.env.example sets \(name), no unit has a default for it")
        }
    }

    @Test("Dockerfile, entrypoint and README: every command line uses real flags")
    func shellText() throws {
        var invocations = DeployFiles.shellInvocations(
            try DeployFiles.text("docker/entrypoint.sh"), origin: "docker/entrypoint.sh")
        #expect(
            invocations.contains { $0.subcommand == "status" } && invocations.contains { $0.arguments == ["--info"] })
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
        // Every TESSERA_ variable named anywhere in deploy/ is one a binary reads (or a
        // script's own: the compose image name, the local test's settings). The compose image
        // name is not TESSERA_IMAGE, which is run --image's variable (deploy audit).
        var real: Set<String> = ["TESSERA_DOCKER_IMAGE", "TESSERA_BIN", "TESSERA_IN_NETNS"]
        for sub in DeployFiles.coordinatorSubcommands {
            real.formUnion(try DeployFiles.variables("tessera-coordinator", sub).keys)
        }
        real.formUnion(try DeployFiles.variables("tessera-worker", nil).keys)
        let regex = try NSRegularExpression(pattern: "TESSERA_[A-Z0-9_]+(?![A-Za-z0-9_<…])")
        let files = FileManager.default.enumerator(atPath: DeployFiles.deploy.path)?.compactMap { $0 as? String } ?? []
        var seen = 0
        for file in files where !file.hasPrefix("keys/") || file == "keys/README.md" {
            guard let text = try? DeployFiles.text(file) else { continue }
            for match in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                let name = String(text[Range(match.range, in: text)!])
                if name.hasSuffix("_") { continue }
                seen += 1
                #expect(
                    real.contains(name),
                    "deploy/\(file): \(name) is not a variable of tessera-coordinator or tessera-worker")
            }
        }
        #expect(seen > 30)
        // The Dockerfile's health check goes through the entrypoint's `healthcheck` role.
        let dockerfile = try DeployFiles.text("docker/Dockerfile")
        let entrypoint = try DeployFiles.text("docker/entrypoint.sh")
        #expect(dockerfile.contains("\"healthcheck\"") && entrypoint.contains("healthcheck)"))
    }

    @Test("entrypoint.sh probe (the containers' health check with metrics on): 200 passes, 404 and no server fail")
    func entrypointProbe() throws {
        let group = try ProcessGroup("entrypoint-probe")
        defer { group.stop() }
        let port = try freeLoopbackPort()
        _ = try group.startCoordinator(extra: ["--metrics-address", "\(port)"])
        let script = DeployFiles.deploy.path + "/docker/entrypoint.sh"
        func probe(_ address: String, _ path: String) throws -> (Int32, String) {
            try runCommand(["/bin/sh", script, "probe", address, path])
        }
        var ready: (Int32, String) = (1, "")
        let deadline = Date().addingTimeInterval(20)
        repeat {
            ready = try probe("0.0.0.0:\(port)", "/readyz")
            if ready.0 == 0 { break }
            usleep(100_000)
        } while Date() < deadline
        #expect(ready.0 == 0, "\(ready.1)\n\(group.log("coordinator"))")
        #expect(try probe(":\(port)", "/healthz").0 == 0)
        let missing = try probe("127.0.0.1:\(port)", "/nothing")
        #expect(missing.0 != 0 && missing.1.contains("404"), "\(missing.1)")
        #expect(try probe("127.0.0.1:\(try freeLoopbackPort())", "/readyz").0 != 0)
    }
}
