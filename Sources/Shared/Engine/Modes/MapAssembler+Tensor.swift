import TesseraPlan

extension MapAssembler {
    /// Places one task's result as the engine returns it.
    package mutating func add(_ task: TileTask, result: Tensor) {
        add(task, result: UnsafeBufferPointer(result.storage), classes: result.c, rows: result.h, cols: result.w)
    }
}
