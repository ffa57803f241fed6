// See include/CTIFFIO.h.
#include "CTIFFIO.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int on_error(TIFF *tif, void *user_data, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    ttiff_errors *errs = (ttiff_errors *)user_data;
    if (errs == NULL) return 1;
    if (errs->errors == 0) {
        int n = snprintf(errs->message, sizeof errs->message, "%s: ", module ? module : "libtiff");
        if (n < 0 || (size_t)n >= sizeof errs->message) n = 0;
        vsnprintf(errs->message + n, sizeof errs->message - (size_t)n, fmt, ap);
    }
    errs->errors += 1;
    return 1;
}

static int on_warning(TIFF *tif, void *user_data, const char *module, const char *fmt, va_list ap) {
    (void)tif; (void)user_data; (void)module; (void)fmt; (void)ap;
    return 1;
}

TIFF *ttiff_open(const char *path, const char *mode, ttiff_errors *errs) {
    TIFFOpenOptions *options = TIFFOpenOptionsAlloc();
    if (options == NULL) {
        snprintf(errs->message, sizeof errs->message, "out of memory");
        errs->errors += 1;
        return NULL;
    }
    TIFFOpenOptionsSetErrorHandlerExtR(options, on_error, errs);
    TIFFOpenOptionsSetWarningHandlerExtR(options, on_warning, errs);
    TIFF *tif = TIFFOpenExt(path, mode, options);
    TIFFOpenOptionsFree(options);
    if (tif == NULL && errs->errors == 0) {
        snprintf(errs->message, sizeof errs->message, "TIFFOpen failed");
        errs->errors += 1;
    }
    return tif;
}

int ttiff_set_directory(TIFF *tif, uint32_t width, uint32_t height, uint32_t tile, uint32_t rows_per_strip,
                        uint16_t samples,
                        uint16_t bits, uint16_t format, int reduced, int zip_level, const char *software,
                        const char *description, double pixels_per_cm, double pixels_per_cm_y) {
    int ok = 1;
    ok &= TIFFSetField(tif, TIFFTAG_SUBFILETYPE, reduced ? FILETYPE_REDUCEDIMAGE : 0);
    ok &= TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, width);
    ok &= TIFFSetField(tif, TIFFTAG_IMAGELENGTH, height);
    if (tile > 0) {
        ok &= TIFFSetField(tif, TIFFTAG_TILEWIDTH, tile);
        ok &= TIFFSetField(tif, TIFFTAG_TILELENGTH, tile);
    } else {
        ok &= TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, rows_per_strip);
    }
    ok &= TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, samples);
    ok &= TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, bits);
    ok &= TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, format);
    ok &= TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    ok &= TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_SEPARATE);
    ok &= TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
    ok &= TIFFSetField(tif, TIFFTAG_ZIPQUALITY, zip_level);
    if (samples > 1) {
        // Min-is-black has one colour sample; the other planes are declared
        // unspecified extra samples (the classes), as tifffile writes them.
        uint16_t *extra = calloc(samples - 1, sizeof *extra);
        if (extra == NULL) return 0;
        for (uint16_t i = 0; i < samples - 1; i++) extra[i] = EXTRASAMPLE_UNSPECIFIED;
        ok &= TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, (uint16_t)(samples - 1), extra);
        free(extra);
    }
    if (software != NULL) ok &= TIFFSetField(tif, TIFFTAG_SOFTWARE, software);
    if (pixels_per_cm > 0) {
        ok &= TIFFSetField(tif, TIFFTAG_XRESOLUTION, (float)pixels_per_cm);
        ok &= TIFFSetField(tif, TIFFTAG_YRESOLUTION, (float)(pixels_per_cm_y > 0 ? pixels_per_cm_y : pixels_per_cm));
        ok &= TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, RESUNIT_CENTIMETER);
    }
    if (description != NULL) ok &= TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION, description);
    return ok ? 1 : 0;
}
