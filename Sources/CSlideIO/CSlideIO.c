// See include/CSlideIO.h. libtiff never prints here: each handle's handlers record the first error and the
// first warning, and count them, so the Swift side can tell a clean read from one libtiff complained about.
#include "CSlideIO.h"

#include <tiffio.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tsl_tiff {
    TIFF *tif;
    int errors;            // error handler calls since the last reset
    int warnings;          // warning handler calls since the last reset
    int io_problems;       // errors, and warnings of data that could not be read, since the last reset
    char first_error[256];
    char first_warning[256];
    char first_io_problem[256];
};

static void set_message(char *message, size_t size, const char *format, ...) {
    if (message == NULL || size == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(message, size, format, args);
    va_end(args);
}

static void record(char *slot, size_t size, const char *module, const char *format, va_list ap) {
    char text[200];
    vsnprintf(text, sizeof text, format, ap);
    if (module != NULL && module[0] != 0) {
        snprintf(slot, size, "%s: %s", module, text);
    } else {
        snprintf(slot, size, "%s", text);
    }
}

/// Whether a warning says data could not be read (a truncated or damaged file), not that a tag is
/// unknown or unusual (private tags, as scanners and tifffile write them, warn too).
static int is_io_problem(const char *text) {
    // A tile/strip offsets or byte counts tag of the wrong length is ignored by libtiff, which then reads
    // every offset as 0: damage, not a private tag's quirk (hostile-input audit).
    int locations = strstr(text, "Incorrect count") != NULL
                    && (strstr(text, "Offsets") != NULL || strstr(text, "ByteCounts") != NULL);
    return locations || strstr(text, "IO error") != NULL || strstr(text, "Read error") != NULL
           || strstr(text, "Seek error") != NULL || strstr(text, "annot read") != NULL
           || strstr(text, "past end") != NULL || strstr(text, "end of file") != NULL;
}

static int on_error(TIFF *tif, void *user_data, const char *module, const char *format, va_list ap) {
    (void)tif;
    struct tsl_tiff *tiff = (struct tsl_tiff *)user_data;
    char text[256];
    record(text, sizeof text, module, format, ap);
    if (tiff->errors++ == 0) snprintf(tiff->first_error, sizeof tiff->first_error, "%s", text);
    if (tiff->io_problems++ == 0) snprintf(tiff->first_io_problem, sizeof tiff->first_io_problem, "%s", text);
    return 1; // handled: libtiff does not call its global handler (stderr)
}

static int on_warning(TIFF *tif, void *user_data, const char *module, const char *format, va_list ap) {
    (void)tif;
    struct tsl_tiff *tiff = (struct tsl_tiff *)user_data;
    char text[256];
    record(text, sizeof text, module, format, ap);
    if (tiff->warnings++ == 0) snprintf(tiff->first_warning, sizeof tiff->first_warning, "%s", text);
    if (is_io_problem(text) && tiff->io_problems++ == 0) {
        snprintf(tiff->first_io_problem, sizeof tiff->first_io_problem, "%s", text);
    }
    return 1;
}

void tsl_tiff_quiet_global_warnings(void) { TIFFSetWarningHandler(NULL); }

static void reset(struct tsl_tiff *tiff) {
    tiff->errors = 0;
    tiff->warnings = 0;
    tiff->io_problems = 0;
    tiff->first_error[0] = 0;
    tiff->first_warning[0] = 0;
    tiff->first_io_problem[0] = 0;
}

void tsl_tiff_last_messages(tsl_tiff *tiff, char *message, size_t message_size) {
    if (tiff == NULL) return;
    if (tiff->errors > 0 && tiff->warnings > 0) {
        set_message(message, message_size, "%s (warning: %s)", tiff->first_error, tiff->first_warning);
    } else if (tiff->errors > 0) {
        set_message(message, message_size, "%s", tiff->first_error);
    } else if (tiff->warnings > 0) {
        set_message(message, message_size, "%s", tiff->first_warning);
    } else {
        set_message(message, message_size, "libtiff gave no reason");
    }
}

int tsl_tiff_io_problem(tsl_tiff *tiff, char *message, size_t message_size) {
    if (tiff == NULL || tiff->io_problems == 0) return 0;
    set_message(message, message_size, "%s", tiff->first_io_problem);
    return tiff->io_problems;
}

int tsl_tiff_open(const char *path, tsl_tiff **out, char *message, size_t message_size) {
    if (path == NULL || out == NULL) {
        set_message(message, message_size, "invalid argument");
        return TSL_ERR_ARGUMENT;
    }
    *out = NULL;
    struct tsl_tiff *tiff = calloc(1, sizeof *tiff);
    TIFFOpenOptions *options = TIFFOpenOptionsAlloc();
    if (tiff == NULL || options == NULL) {
        free(tiff);
        if (options != NULL) TIFFOpenOptionsFree(options);
        set_message(message, message_size, "out of memory");
        return TSL_ERR_OPEN;
    }
    TIFFOpenOptionsSetErrorHandlerExtR(options, on_error, tiff);
    TIFFOpenOptionsSetWarningHandlerExtR(options, on_warning, tiff);
    tiff->tif = TIFFOpenExt(path, "rm", options);
    TIFFOpenOptionsFree(options);
    if (tiff->tif == NULL) {
        tsl_tiff_last_messages(tiff, message, message_size);
        free(tiff);
        return TSL_ERR_OPEN;
    }
    *out = tiff;
    return TSL_OK;
}

void tsl_tiff_close(tsl_tiff *tiff) {
    if (tiff == NULL) return;
    if (tiff->tif != NULL) TIFFClose(tiff->tif);
    free(tiff);
}

int tsl_tiff_directory_count(tsl_tiff *tiff) {
    if (tiff == NULL) return 0;
    return (int)TIFFNumberOfDirectories(tiff->tif);
}

/// Fills `info` from the current directory.
static int describe(struct tsl_tiff *tiff, tsl_dir_info *info, char *message, size_t message_size) {
    TIFF *tif = tiff->tif;
    memset(info, 0, sizeof *info);
    uint32_t u32 = 0;
    uint16_t u16 = 0;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &info->width) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH,
                                                                               &info->height)) {
        set_message(message, message_size, "the directory has no ImageWidth or ImageLength");
        return TSL_ERR_DIRECTORY;
    }
    info->tiled = TIFFIsTiled(tif) ? 1 : 0;
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &info->samples_per_pixel);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &info->bits_per_sample);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &info->sample_format);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &info->planar_config);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &info->compression);
    if (TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &u16)) {
        info->photometric = u16;
    } else {
        info->photometric = info->samples_per_pixel >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;
    }
    uint16_t extra_count = 0;
    uint16_t *extra = NULL;
    if (TIFFGetField(tif, TIFFTAG_EXTRASAMPLES, &extra_count, &extra)) {
        info->extra_samples = extra_count;
        for (uint16_t i = 0; extra != NULL && i < extra_count; i++) {
            if (extra[i] == EXTRASAMPLE_ASSOCALPHA || extra[i] == EXTRASAMPLE_UNASSALPHA) info->alpha_samples++;
        }
    }
    if (TIFFGetField(tif, TIFFTAG_SUBFILETYPE, &u32)) info->subfile_type = u32;
    if (TIFFGetField(tif, TIFFTAG_RESOLUTIONUNIT, &u16)) info->resolution_unit = u16;
    float resolution = 0;
    if (TIFFGetField(tif, TIFFTAG_XRESOLUTION, &resolution)) info->x_resolution = resolution;
    if (TIFFGetField(tif, TIFFTAG_YRESOLUTION, &resolution)) info->y_resolution = resolution;
    uint16_t subifd_count = 0;
    void *subifds = NULL;
    if (TIFFGetField(tif, TIFFTAG_SUBIFD, &subifd_count, &subifds)) info->subifd_count = subifd_count;
    info->codec_configured = TIFFIsCODECConfigured(info->compression) ? 1 : 0;
    if (info->compression == COMPRESSION_JPEG && info->photometric == PHOTOMETRIC_YCBCR) {
        // Without this, JPEG YCbCr tiles decode to raw subsampled YCbCr.
        TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    }
    if (info->tiled) {
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &info->tile_width);
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &info->tile_height);
        info->chunk_count = TIFFNumberOfTiles(tif);
        info->chunk_size = (int64_t)TIFFTileSize64(tif);
    } else {
        uint32_t rows = 0;
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rows);
        info->tile_width = info->width;
        info->tile_height = rows == 0 || rows > info->height ? info->height : rows;
        info->chunk_count = TIFFNumberOfStrips(tif);
        info->chunk_size = (int64_t)TIFFStripSize64(tif);
    }
    return TSL_OK;
}

int tsl_tiff_select_directory(tsl_tiff *tiff, int index, tsl_dir_info *info, char *message, size_t message_size) {
    if (tiff == NULL || info == NULL || index < 0) {
        set_message(message, message_size, "invalid argument");
        return TSL_ERR_ARGUMENT;
    }
    reset(tiff);
    if (!TIFFSetDirectory(tiff->tif, (tdir_t)index)) {
        tsl_tiff_last_messages(tiff, message, message_size);
        return TSL_ERR_DIRECTORY;
    }
    return describe(tiff, info, message, message_size);
}

int tsl_tiff_select_subifd(tsl_tiff *tiff, uint64_t offset, tsl_dir_info *info, char *message,
                           size_t message_size) {
    if (tiff == NULL || info == NULL) {
        set_message(message, message_size, "invalid argument");
        return TSL_ERR_ARGUMENT;
    }
    reset(tiff);
    if (!TIFFSetSubDirectory(tiff->tif, offset)) {
        tsl_tiff_last_messages(tiff, message, message_size);
        return TSL_ERR_DIRECTORY;
    }
    return describe(tiff, info, message, message_size);
}

int tsl_tiff_subifd_offsets(tsl_tiff *tiff, uint64_t *offsets, int capacity) {
    if (tiff == NULL) return 0;
    uint16_t count = 0;
    uint64_t *values = NULL;
    if (!TIFFGetField(tiff->tif, TIFFTAG_SUBIFD, &count, &values) || values == NULL) return 0;
    for (int i = 0; i < count && i < capacity; i++) offsets[i] = values[i];
    return count;
}

int tsl_tiff_description(tsl_tiff *tiff, char *buffer, size_t size) {
    if (tiff == NULL || buffer == NULL || size == 0) return 0;
    const char *text = NULL;
    if (!TIFFGetField(tiff->tif, TIFFTAG_IMAGEDESCRIPTION, &text) || text == NULL) return 0;
    snprintf(buffer, size, "%s", text);
    return 1;
}

int tsl_tiff_chunk_location(tsl_tiff *tiff, uint32_t index, uint64_t *offset, uint64_t *byte_count) {
    if (tiff == NULL || offset == NULL || byte_count == NULL) return TSL_ERR_ARGUMENT;
    int error = 0;
    *offset = TIFFGetStrileOffsetWithErr(tiff->tif, index, &error);
    if (error) return TSL_ERR_DIRECTORY;
    *byte_count = TIFFGetStrileByteCountWithErr(tiff->tif, index, &error);
    return error ? TSL_ERR_DIRECTORY : TSL_OK;
}

int64_t tsl_tiff_read_chunk(tsl_tiff *tiff, uint32_t index, void *buffer, size_t size, char *message,
                            size_t message_size) {
    if (tiff == NULL || buffer == NULL) {
        set_message(message, message_size, "invalid argument");
        return -1;
    }
    reset(tiff);
    tmsize_t got = TIFFIsTiled(tiff->tif) ? TIFFReadEncodedTile(tiff->tif, index, buffer, (tmsize_t)size)
                                          : TIFFReadEncodedStrip(tiff->tif, index, buffer, (tmsize_t)size);
    if (got < 0 || tiff->errors > 0 || tiff->warnings > 0) {
        tsl_tiff_last_messages(tiff, message, message_size);
        return -1;
    }
    return (int64_t)got;
}
