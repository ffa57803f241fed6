// The CBLAS declarations (types, enums, prototypes); the symbols are resolved
// with dlsym by Shared/BLAS/BLAS.swift, never linked.
#include <cblas.h>
