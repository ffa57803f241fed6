// libtiff, used only by the CSlideIO helper target (its tag API is varargs).
#include <tiffio.h>
