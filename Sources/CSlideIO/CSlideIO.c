// See include/CSlideIO.h. libtiff never prints here: each handle's handlers record the first error and the
// first warning, and count them, so the Swift side can tell a clean read from one libtiff complained about.
#include "CSlideIO.h"

#include <tiffio.h>
#include <zlib.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tsl_tiff {
    TIFF *tif;
    int errors;            // error handler calls since the last reset
    int warnings;          // warning handler calls since the last reset
    int io_problems;       // errors, and warnings of data that could not be read, since the last reset
    char first_error[256];
    char first_warning[256];
    char first_io_problem[256];
    unsigned char *raw;    // a chunk's stored bytes, for the deflate check (grown as needed)
    size_t raw_capacity;
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
    free(tiff->raw);
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

/// Makes `tiff->raw` hold at least `size` bytes.
static int reserve_raw(struct tsl_tiff *tiff, uint64_t size, char *message, size_t message_size) {
    if (size <= tiff->raw_capacity) return 1;
    unsigned char *grown = realloc(tiff->raw, (size_t)size);
    if (grown == NULL) {
        set_message(message, message_size, "out of memory for %llu bytes", (unsigned long long)size);
        return 0;
    }
    tiff->raw = grown;
    tiff->raw_capacity = (size_t)size;
    return 1;
}

/// The Adler-32 of the bytes that were deflated into the chunk, worked out from the `size` bytes libtiff
/// `decoded`, in `adler`, when that is cheap: no predictor, or the horizontal one on 8-bit samples (undone
/// by libtiff, redone here row by row), and no byte swapping. Returns 0 when it cannot.
static int decoded_adler(struct tsl_tiff *tiff, const unsigned char *decoded, uint64_t size, uLong *adler) {
    TIFF *tif = tiff->tif;
    uint16_t predictor = PREDICTOR_NONE, bits = 8, samples = 1, planar = PLANARCONFIG_CONTIG;
    TIFFGetFieldDefaulted(tif, TIFFTAG_PREDICTOR, &predictor);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &samples);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    if (bits != 8 && TIFFIsByteSwapped(tif)) return 0;
    *adler = adler32(0L, Z_NULL, 0);
    if (predictor == PREDICTOR_NONE) {
        const uInt step = 1u << 30;
        for (uint64_t at = 0; at < size; at += step) {
            *adler = adler32(*adler, decoded + at, (uInt)(size - at < step ? size - at : step));
        }
        return 1;
    }
    if (predictor != PREDICTOR_HORIZONTAL || bits != 8) return 0;
    uint32_t width = 0;
    if (TIFFIsTiled(tif)) {
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &width);
    } else {
        TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &width);
    }
    uint64_t stride = planar == PLANARCONFIG_SEPARATE ? 1 : samples;
    uint64_t row = (uint64_t)width * stride;
    if (row == 0 || size % row != 0 || !reserve_raw(tiff, row, NULL, 0)) return 0;
    for (uint64_t at = 0; at < size; at += row) {
        const unsigned char *in = decoded + at;
        unsigned char *out = tiff->raw;
        for (uint64_t i = 0; i < stride && i < row; i++) out[i] = in[i];
        for (uint64_t i = stride; i < row; i++) out[i] = (unsigned char)(in[i] - in[i - stride]);
        *adler = adler32(*adler, out, (uInt)row);
    }
    return 1;
}

/// Whether chunk `index`'s stored deflate (zlib) stream is whole: it inflates to its end, where zlib checks
/// its Adler-32, and gives at least the `size` bytes libtiff delivered into `decoded`. libtiff stops
/// inflating once the chunk's buffer is full (with libdeflate: once the output overflows it) and never
/// reaches the check, so a damaged stream that still filled the chunk was a successful read of wrong pixels
/// (whole-slide audit 35 F1; zlib and tifffile refuse such a tile).
/// Fast path: the Adler-32 of what libtiff delivered (`decoded_adler`) equals the stream's last 4 bytes.
/// Otherwise (a predictor redone at a cost, bytes after the stream, a stream longer than the chunk, or
/// damage) the stream is inflated again into scratch memory, to its end.
static int deflate_stream_intact(struct tsl_tiff *tiff, uint32_t index, const unsigned char *decoded,
                                 uint64_t size, char *message, size_t message_size) {
    TIFF *tif = tiff->tif;
    int error = 0;
    uint64_t offset = TIFFGetStrileOffsetWithErr(tif, index, &error);
    uint64_t stored = error ? 0 : TIFFGetStrileByteCountWithErr(tif, index, &error);
    if (error || stored < 6) {
        set_message(message, message_size, "the deflate stream's location cannot be read");
        return 0;
    }
    uLong adler = 0;
    unsigned char tail[4];
    if (decoded_adler(tiff, decoded, size, &adler)
        && pread(TIFFFileno(tif), tail, 4, (off_t)(offset + stored - 4)) == 4) {
        uLong stored_adler = ((uLong)tail[0] << 24) | ((uLong)tail[1] << 16) | ((uLong)tail[2] << 8) | tail[3];
        if (stored_adler == adler) return 1;
    }
    if (!reserve_raw(tiff, stored, message, message_size)) return 0;
    tmsize_t got = TIFFIsTiled(tif) ? TIFFReadRawTile(tif, index, tiff->raw, (tmsize_t)stored)
                                    : TIFFReadRawStrip(tif, index, tiff->raw, (tmsize_t)stored);
    if (got < 0 || tiff->errors > 0) {
        tsl_tiff_last_messages(tiff, message, message_size);
        return 0;
    }
    z_stream stream;
    memset(&stream, 0, sizeof stream);
    if (inflateInit(&stream) != Z_OK) {
        set_message(message, message_size, "zlib could not start");
        return 0;
    }
    unsigned char scratch[65536];
    uint64_t consumed = 0;
    int status = Z_OK;
    const uint64_t step = 1u << 30;  // avail_in is 32 bits
    while (status == Z_OK) {
        if (stream.avail_in == 0 && consumed < (uint64_t)got) {
            uint64_t left = (uint64_t)got - consumed;
            stream.next_in = tiff->raw + consumed;
            stream.avail_in = (uInt)(left < step ? left : step);
            consumed += stream.avail_in;
        }
        stream.next_out = scratch;
        stream.avail_out = sizeof scratch;
        status = inflate(&stream, Z_NO_FLUSH);
        // No progress with room to write: the input ran out before the stream's end.
        if (status == Z_BUF_ERROR && !(stream.avail_in == 0 && consumed >= (uint64_t)got)) status = Z_OK;
    }
    uint64_t total = (uint64_t)stream.total_out;
    const char *reason = stream.msg;
    inflateEnd(&stream);
    if (status == Z_STREAM_END && total >= size) return 1;
    if (status == Z_STREAM_END) {
        set_message(message, message_size, "its deflate stream holds %llu bytes, %llu expected",
                    (unsigned long long)total, (unsigned long long)size);
    } else if (status == Z_DATA_ERROR) {
        set_message(message, message_size, "its deflate stream is damaged (zlib: %s)", reason ? reason : "data error");
    } else if (status == Z_BUF_ERROR) {
        set_message(message, message_size, "its deflate stream is cut short after %llu bytes",
                    (unsigned long long)total);
    } else {
        set_message(message, message_size, "zlib failed (%d) on its deflate stream", status);
    }
    return 0;
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
    uint16_t compression = COMPRESSION_NONE;
    TIFFGetFieldDefaulted(tiff->tif, TIFFTAG_COMPRESSION, &compression);
    if ((compression == COMPRESSION_ADOBE_DEFLATE || compression == COMPRESSION_DEFLATE)
        && !deflate_stream_intact(tiff, index, buffer, (uint64_t)got, message, message_size)) {
        return -1;
    }
    return (int64_t)got;
}
