// CPNGIO: the only code that calls libpng's row-by-row API.
//
// libpng reports errors by longjmp, which Swift frames cannot survive. Every
// function here owns its own setjmp, catches libpng's error, copies the message
// into the caller's buffer and returns a status code: control never longjmps
// into Swift. The simplified API (png_image_*) would avoid setjmp, but it
// decodes the whole image into one buffer in a format of its choosing and
// cannot write row by row, which the large maps need.
#ifndef TESSERA_CPNGIO_H
#define TESSERA_CPNGIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Status codes. 0 is success; the others say what went wrong, the message
/// buffer says how.
typedef enum {
    TPNG_OK = 0,
    TPNG_ERR_OPEN = 1,          ///< fopen failed (message has strerror)
    TPNG_ERR_NOT_PNG = 2,       ///< the PNG signature is missing
    TPNG_ERR_TRUNCATED = 3,     ///< the file ended before the image did
    TPNG_ERR_CRC = 4,           ///< a critical chunk failed its CRC check
    TPNG_ERR_DIMENSIONS = 5,    ///< zero, out-of-range or over-the-user-limit width/height
    TPNG_ERR_BIT_DEPTH = 6,     ///< bit depth / colour type not allowed by PNG
    TPNG_ERR_HEADER = 7,        ///< other invalid IHDR field
    TPNG_ERR_TOO_LARGE = 8,     ///< width × height exceeds the caller's pixel limit
    TPNG_ERR_CORRUPT = 9,       ///< any other libpng error (bad zlib data, …)
    TPNG_ERR_IO = 10,           ///< write/flush/close failed (message has strerror)
    TPNG_ERR_NOMEM = 11,        ///< malloc failed
    TPNG_ERR_ARGUMENT = 12,     ///< the caller passed something invalid (a bug)
    TPNG_ERR_STATE = 13,        ///< the call does not fit the reader/writer state (a bug)
    TPNG_ERR_OUTPUT = 14,       ///< the file the rows are decoded into failed (message has strerror)
} tpng_status;

/// What a reader reports after opening a file.
typedef struct {
    uint32_t width;
    uint32_t height;
    int file_bit_depth;   ///< 1, 2, 4, 8 or 16, as in IHDR
    int file_color_type;  ///< PNG_COLOR_TYPE_* as in IHDR
    int interlaced;       ///< 1 for Adam7, 0 for none
    int has_trns;         ///< 1 if a tRNS chunk was present (ignored: alpha is dropped)
    int channels;         ///< channels delivered: 1 (gray) or 3 (RGB)
    int bit_depth;        ///< bit depth delivered: 8 or 16 (16-bit in host byte order)
    size_t row_bytes;     ///< bytes of one delivered row = width * channels * bit_depth/8
} tpng_info;

typedef struct tpng_reader tpng_reader;
typedef struct tpng_writer tpng_writer;

/// Opens `path`, checks the signature, reads the header and sets up the
/// transformations: palette → RGB, 1/2/4-bit gray → 8-bit, alpha and tRNS
/// dropped (not composited), 16-bit kept and swapped to host order.
/// Width and height are each limited to `max_pixels` through
/// png_set_user_limits, and width × height to `max_pixels` here, before any
/// image memory exists. A chunk whose declared length passes the end of the
/// file, and a file too short to hold the pixels its header
/// declares, even at deflate's best ratio (1032:1), fails with
/// TPNG_ERR_TRUNCATED before libpng allocates its row buffers. On success
/// `*out` owns the file; close it with tpng_reader_close.
int tpng_reader_open(const char *path, uint64_t max_pixels, tpng_reader **out, tpng_info *info,
                     char *message, size_t message_size);

/// Reads the next `count` rows of a non-interlaced image into `dst`, rows
/// `stride` bytes apart (stride ≥ info.row_bytes). Interlaced images return
/// TPNG_ERR_STATE: use tpng_reader_read_image.
int tpng_reader_read_rows(tpng_reader *reader, void *dst, uint32_t count, size_t stride,
                          char *message, size_t message_size);

/// Reads the whole image into `dst` (height rows, `stride` bytes apart), with
/// every Adam7 pass when interlaced, straight into the caller's buffer; then
/// reads the chunks after the image data so that a truncated tail or a bad
/// IEND is reported. Must be the first read call.
int tpng_reader_read_image(tpng_reader *reader, void *dst, size_t stride, char *message, size_t message_size);

/// `tpng_reader_read_image` into the file `fd` instead of memory (rows `stride`
/// bytes apart from offset 0; the file is sized to height × stride first): each
/// Adam7 pass's rows are read back, merged and written again, so memory is one
/// row whatever the image (a non-interlaced one is written in bands of about
/// 1 MiB). Failed reads or writes of `fd` give TPNG_ERR_OUTPUT with strerror (a
/// failed read of the PNG stays TPNG_ERR_IO). Must be the first read call; `fd`
/// stays open.
int tpng_reader_read_image_fd(tpng_reader *reader, int fd, size_t stride, char *message, size_t message_size);

/// Reads the chunks after the image data (after all rows were read with
/// tpng_reader_read_rows).
int tpng_reader_finish(tpng_reader *reader, char *message, size_t message_size);

/// libpng's warnings so far, "; "-separated (empty when none).
void tpng_reader_warnings(const tpng_reader *reader, char *out, size_t out_size);

/// Frees the reader and closes its file. NULL is fine.
void tpng_reader_close(tpng_reader *reader);

/// Creates `path` and writes the header of a non-interlaced `channels`
/// (1 gray, 3 RGB) image of `bit_depth` 8 or 16 bits. `compression_level` is
/// zlib's 0–9, or -1 for libpng's default.
int tpng_writer_open(const char *path, uint32_t width, uint32_t height, int channels, int bit_depth,
                     int compression_level, tpng_writer **out, char *message, size_t message_size);

/// Writes the next row: width * channels samples, 16-bit ones in host order.
int tpng_writer_write_row(tpng_writer *writer, const void *row, char *message, size_t message_size);

/// Writes the end of the image, flushes, fsyncs and closes the file. Fails
/// with TPNG_ERR_STATE unless every row was written.
int tpng_writer_finish(tpng_writer *writer, char *message, size_t message_size);

/// Frees the writer and closes its file if still open (an unfinished file is
/// left as it is: the caller removes it). NULL is fine.
void tpng_writer_close(tpng_writer *writer);

/// Writes a complete PNG of any kind from rows already in PNG's own sample
/// layout (sub-byte samples packed, 16-bit big-endian), `stride` bytes apart:
/// any colour type and bit depth libpng accepts, an optional palette
/// (`palette_rgb`, `palette_entries` × 3 bytes), an optional tRNS
/// (`trns`, `trns_count` bytes for palettes; for gray/RGB pass `trns_color`
/// as {gray} or {r, g, b} with trns_count = 1), and optional Adam7
/// interlacing. Meant for creating test images of every kind.
int tpng_write_raw(const char *path, uint32_t width, uint32_t height, int bit_depth, int color_type,
                   int interlaced, const void *rows, size_t stride, const uint8_t *palette_rgb,
                   int palette_entries, const uint8_t *trns, int trns_count, const uint16_t *trns_color,
                   char *message, size_t message_size);

/* The version of the libpng this program runs with (for `info`). */
const char *tpng_library_version(void);

#ifdef __cplusplus
}
#endif

#endif
