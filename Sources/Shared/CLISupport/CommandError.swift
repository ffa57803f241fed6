/// A problem with what a command works on (a file, a key, the model, the image) rather than with its command
/// line: exit status 1 and no usage text. ArgumentParser's `ValidationError` (exit status 64, EX_USAGE, with the
/// usage) is for command lines that are wrong in themselves (user review F11: `--keep-classes 5` of a 2-class net
/// exited 64 where `--classes 3` exited 1).
package struct CommandError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
