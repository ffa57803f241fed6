// CTIFFIO: the parts of libtiff Swift cannot call itself. TIFFSetField is
// variadic and the error handlers receive a va_list; this target sets the tags
// of a directory in one call and collects each handle's errors in a buffer the
// caller owns (per handle, so concurrent exports do not share a global handler).
#ifndef TESSERA_CTIFFIO_H
#define TESSERA_CTIFFIO_H

#include <stddef.h>
#include <stdint.h>
#include <tiffio.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Messages libtiff reported for one handle: the first error, and a count.
typedef struct {
    char message[512];
    int errors;
} ttiff_errors;

/// Opens `path` with `mode` ("w8": BigTIFF for writing), routing errors into
/// `errs` (which must outlive the handle) and silencing warnings. NULL on failure
/// (then `errs->message` says why).
TIFF *ttiff_open(const char *path, const char *mode, ttiff_errors *errs);

/// Sets the tags of the current directory of a tiled (`tile` > 0) or stripped (`tile` 0,
/// `rows_per_strip` rows a strip), planar-separate, min-is-black image: `samples` planes of `bits`-bit samples of `format`
/// (SAMPLEFORMAT_UINT or _IEEEFP), deflate at `zip_level`, NewSubfileType
/// reduced when `reduced`, ImageDescription when `description` is not NULL, X and Y resolution (pixels per
/// centimetre; Y the same as X when `pixels_per_cm_y` is 0) when `pixels_per_cm` > 0.
/// Returns 1 on success, 0 when libtiff refused a field.
int ttiff_set_directory(TIFF *tif, uint32_t width, uint32_t height, uint32_t tile, uint32_t rows_per_strip,
                        uint16_t samples,
                        uint16_t bits, uint16_t format, int reduced, int zip_level, const char *software,
                        const char *description, double pixels_per_cm, double pixels_per_cm_y);

#ifdef __cplusplus
}
#endif

#endif
