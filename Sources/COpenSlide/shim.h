// OpenSlide 3.4: a plain C API (no varargs, no longjmp), called directly from Swift.
#include <openslide.h>
