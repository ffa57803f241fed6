// libpng's simplified API is used directly from Swift; the row-by-row API,
// which reports errors by longjmp, is reached only through the C helper target.
#include <png.h>
