// See include/CPNGIO.h. Rules kept throughout this file:
// - every libpng call that can fail runs under a setjmp owned by the calling
//   function of this file, so libpng's longjmp lands here and never in Swift;
// - state that changes between setjmp and longjmp lives in the heap structs,
//   never in locals (locals would need `volatile`);
// - the error callback never returns (it longjmps), as libpng requires.
#define _POSIX_C_SOURCE 200809L // fileno, fsync under a strict -std=c11

#include "CPNGIO.h"

#include <png.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// MARK: - Shared helpers

/// What the libpng callbacks record; first member of reader and writer.
typedef struct {
    char error[256];    // libpng's error message
    char warnings[512]; // libpng's warnings, "; "-separated (the reason behind "Invalid IHDR data")
    int eof;            // our read callback met the end of the file
    int io_errno;       // our read/write callback met an I/O error
} tpng_diag;

static void set_message(char *message, size_t size, const char *format, ...) {
    if (message == NULL || size == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(message, size, format, args);
    va_end(args);
}

static void on_error(png_structp png, png_const_charp text) {
    tpng_diag *diag = (tpng_diag *)png_get_error_ptr(png);
    snprintf(diag->error, sizeof diag->error, "%s", text);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp text) {
    tpng_diag *diag = (tpng_diag *)png_get_error_ptr(png);
    size_t used = strlen(diag->warnings);
    if (used + 3 < sizeof diag->warnings) {
        snprintf(diag->warnings + used, sizeof diag->warnings - used, "%s%s", used > 0 ? "; " : "", text);
    }
}

/// PNG's CRC-32 (bitwise; used on the 17 bytes of IHDR only).
static uint32_t crc32_of(const uint8_t *bytes, size_t count) {
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < count; i++) {
        crc ^= bytes[i];
        for (int bit = 0; bit < 8; bit++) crc = (crc & 1u) ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
    }
    return ~crc;
}

static int host_is_little_endian(void) {
    const uint16_t probe = 1;
    return *(const uint8_t *)&probe == 1;
}

/// Maps what libpng said to a status code and writes the message.
/// `in_header`: the error happened while reading the header chunks.
static int report(const tpng_diag *diag, int in_header, char *message, size_t size) {
    if (diag->eof) {
        set_message(message, size, "unexpected end of file (%s)", diag->error);
        return TPNG_ERR_TRUNCATED;
    }
    if (diag->io_errno != 0) {
        set_message(message, size, "%s: %s", diag->error, strerror(diag->io_errno));
        return TPNG_ERR_IO;
    }
    if (strstr(diag->error, "CRC") != NULL) {
        set_message(message, size, "%s", diag->error);
        return TPNG_ERR_CRC;
    }
    if (strstr(diag->error, "Insufficient memory") != NULL || strstr(diag->error, "Out of Memory") != NULL) {
        set_message(message, size, "%s", diag->error);
        return TPNG_ERR_NOMEM;
    }
    if (strcmp(diag->error, "Invalid IHDR data") == 0) {
        set_message(message, size, "%s: %s", diag->error, diag->warnings);
        if (strstr(diag->warnings, "width") != NULL || strstr(diag->warnings, "height") != NULL) {
            return TPNG_ERR_DIMENSIONS;
        }
        if (strstr(diag->warnings, "bit depth") != NULL) return TPNG_ERR_BIT_DEPTH;
        return TPNG_ERR_HEADER;
    }
    if (in_header && strstr(diag->error, "out of range") != NULL) {
        // png_get_uint_31 on IHDR's width or height (≥ 2^31).
        set_message(message, size, "%s (a width or height of 2^31 or more)", diag->error);
        return TPNG_ERR_DIMENSIONS;
    }
    set_message(message, size, "%s", diag->error);
    return TPNG_ERR_CORRUPT;
}

// MARK: - Reader

struct tpng_reader {
    tpng_diag diag;
    FILE *file;
    png_structp png;
    png_infop info;
    png_bytepp row_pointers; // only while tpng_reader_read_image runs
    png_bytep file_row;      // only while tpng_reader_read_image_fd runs
    uint32_t height;
    uint32_t rows_read;
    int passes;
    int interlaced;
    int image_read;
    int finished;
    // A palette image is read as indices (one byte each) and expanded here, so that an
    // index past PLTE is an error: libpng's own expansion makes it black (user audit: a
    // whole image of them mapped as confident nuclei, exit 0).
    int palette_entries;             // 0: not a palette image
    uint8_t palette[256 * 3];
    uint32_t width;
    int bad_index;                   // the first index past the palette met, or -1
    uint32_t bad_x, bad_y;
};

/// Expands `row`'s `width` indices (the first `width` bytes) into RGB in place, from the
/// right (pixel x's 3 bytes start at 3x ≥ x). Records the first index past the palette.
static void expand_palette_row(struct tpng_reader *reader, uint8_t *row, uint32_t y) {
    for (uint32_t i = reader->width; i > 0; i--) {
        uint32_t x = i - 1;
        uint8_t index = row[x];
        if (index >= reader->palette_entries) {
            if (reader->bad_index < 0 || y < reader->bad_y || (y == reader->bad_y && x < reader->bad_x)) {
                reader->bad_index = index;
                reader->bad_x = x;
                reader->bad_y = y;
            }
            row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = 0;
            continue;
        }
        const uint8_t *rgb = reader->palette + 3 * (size_t)index;
        row[3 * x + 2] = rgb[2];
        row[3 * x + 1] = rgb[1];
        row[3 * x] = rgb[0];
    }
}

/// TPNG_ERR_CORRUPT naming the first pixel whose index lies past the palette; TPNG_OK if none.
static int palette_status(const struct tpng_reader *reader, char *message, size_t size);

static void on_read(png_structp png, png_bytep data, size_t length) {
    struct tpng_reader *reader = (struct tpng_reader *)png_get_io_ptr(png);
    size_t got = fread(data, 1, length, reader->file);
    if (got != length) {
        if (ferror(reader->file)) {
            reader->diag.io_errno = errno != 0 ? errno : EIO;
            png_error(png, "read error");
        }
        reader->diag.eof = 1;
        png_error(png, "the file ends inside a chunk");
    }
}

void tpng_reader_close(tpng_reader *reader) {
    if (reader == NULL) return;
    if (reader->png != NULL) png_destroy_read_struct(&reader->png, &reader->info, NULL);
    free(reader->row_pointers);
    free(reader->file_row);
    if (reader->file != NULL) fclose(reader->file);
    free(reader);
}

/// Walks the chunk headers after the signature up to IEND: every declared
/// length must fit in what is left of the file. libpng trusts a length until
/// it has read it: an ancillary chunk declaring 1 GB in a 100-byte file made
/// it allocate and zero a gigabyte before the read failed.
static int check_chunk_lengths(FILE *file, long long file_size, char *message, size_t size) {
    long long at = 8;
    while (at + 8 <= file_size) {
        png_byte head[8];
        if (fseeko(file, (off_t)at, SEEK_SET) != 0 || fread(head, 1, sizeof head, file) != sizeof head) break;
        png_uint_32 length = png_get_uint_32(head);
        if ((long long)length + 12 > file_size - at) {
            char type[5];
            for (int i = 0; i < 4; i++) {
                png_byte c = head[4 + i];
                type[i] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ? (char)c : '?';
            }
            type[4] = 0;
            set_message(message, size,
                        "chunk '%s' at byte %lld declares %u bytes of data, which with its 4-byte CRC need %lld "
                        "bytes, but the file has only %lld bytes left",
                        type, at, length, (long long)length + 4, file_size - at - 8);
            return TPNG_ERR_TRUNCATED;
        }
        if (memcmp(head + 4, "IEND", 4) == 0) break;
        at += 12 + (long long)length;
    }
    return TPNG_OK;
}

int tpng_reader_open(const char *path, uint64_t max_pixels, tpng_reader **out, tpng_info *info,
                     char *message, size_t message_size) {
    if (path == NULL || out == NULL || info == NULL || max_pixels == 0) {
        set_message(message, message_size, "invalid argument");
        return TPNG_ERR_ARGUMENT;
    }
    *out = NULL;
    struct tpng_reader *reader = calloc(1, sizeof *reader);
    if (reader == NULL) {
        set_message(message, message_size, "out of memory");
        return TPNG_ERR_NOMEM;
    }
    reader->file = fopen(path, "rb");
    if (reader->file == NULL) {
        set_message(message, message_size, "cannot open: %s", strerror(errno));
        tpng_reader_close(reader);
        return TPNG_ERR_OPEN;
    }
    png_byte signature[8];
    size_t got = fread(signature, 1, sizeof signature, reader->file);
    if (got < sizeof signature || png_sig_cmp(signature, 0, sizeof signature) != 0) {
        int truncated = got > 0 && got < sizeof signature && png_sig_cmp(signature, 0, got) == 0;
        if (truncated) {
            set_message(message, message_size, "unexpected end of file inside the PNG signature");
        } else if (got == 0) {
            set_message(message, message_size, "the file is empty, not a PNG");
        } else {
            set_message(message, message_size, "no PNG signature: not a PNG file");
        }
        tpng_reader_close(reader);
        return truncated ? TPNG_ERR_TRUNCATED : TPNG_ERR_NOT_PNG;
    }
    // Check the pixel limit on IHDR before libpng reads anything else: it
    // reads every chunk up to the first IDAT inside png_read_info.
    // A header with a bad CRC is left to libpng, which reports the CRC error.
    png_byte ihdr[8 + 13 + 4];
    if (fread(ihdr, 1, sizeof ihdr, reader->file) == sizeof ihdr && png_get_uint_32(ihdr) == 13 &&
        memcmp(ihdr + 4, "IHDR", 4) == 0 && png_get_uint_32(ihdr + 21) == crc32_of(ihdr + 4, 4 + 13)) {
        png_uint_32 width = png_get_uint_32(ihdr + 8), height = png_get_uint_32(ihdr + 12);
        if (width > 0 && height > 0 && width <= 0x7fffffffu && height <= 0x7fffffffu &&
            (uint64_t)width * (uint64_t)height > max_pixels) {
            set_message(message, message_size, "%u×%u = %llu pixels, over the limit of %llu pixels (--max-pixels)",
                        width, height, (unsigned long long)width * height, (unsigned long long)max_pixels);
            tpng_reader_close(reader);
            return TPNG_ERR_TOO_LARGE;
        }
    }
    struct stat st;
    if (fstat(fileno(reader->file), &st) == 0 && S_ISREG(st.st_mode)) {
        int status = check_chunk_lengths(reader->file, (long long)st.st_size, message, message_size);
        if (status != TPNG_OK) {
            tpng_reader_close(reader);
            return status;
        }
    }
    if (fseek(reader->file, (long)sizeof signature, SEEK_SET) != 0) {
        set_message(message, message_size, "cannot seek: %s", strerror(errno));
        tpng_reader_close(reader);
        return TPNG_ERR_IO;
    }
    reader->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader->diag, on_error, on_warning);
    if (reader->png != NULL) reader->info = png_create_info_struct(reader->png);
    if (reader->png == NULL || reader->info == NULL) {
        set_message(message, message_size, "cannot create libpng read structures");
        tpng_reader_close(reader);
        return TPNG_ERR_NOMEM;
    }
    if (setjmp(png_jmpbuf(reader->png))) {
        int status = report(&reader->diag, png_get_image_width(reader->png, reader->info) == 0, message,
                            message_size);
        tpng_reader_close(reader);
        return status;
    }
    png_set_read_fn(reader->png, reader, on_read);
    png_set_sig_bytes(reader->png, 8);
    uint32_t dimension_limit = max_pixels < 0x7fffffffu ? (uint32_t)max_pixels : 0x7fffffffu;
    png_set_user_limits(reader->png, dimension_limit, dimension_limit);
    png_read_info(reader->png, reader->info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(reader->png, reader->info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    if ((uint64_t)width * (uint64_t)height > max_pixels) {
        set_message(message, message_size, "%u×%u = %llu pixels, over the limit of %llu pixels (--max-pixels)",
                    width, height,
                    (unsigned long long)width * height, (unsigned long long)max_pixels);
        tpng_reader_close(reader);
        return TPNG_ERR_TOO_LARGE;
    }
    // A header may claim far more pixels than the file holds (a few hundred
    // bytes declaring 40000 x 30000): refuse it before libpng allocates its
    // row buffers (png_read_update_info zeroes a whole row) and before the
    // caller allocates the image. Deflate cannot compress better than 1032:1
    // (2 bits per 258-byte match), and the filtered data holds at least every
    // pixel's bits, so a file shorter than that is truncated or lying.
    if (fstat(fileno(reader->file), &st) == 0 && S_ISREG(st.st_mode)) {
        int samples = (color_type & PNG_COLOR_MASK_PALETTE) ? 1
                      : ((color_type & PNG_COLOR_MASK_COLOR) ? 3 : 1) + ((color_type & PNG_COLOR_MASK_ALPHA) ? 1 : 0);
        uint64_t pixel_bytes = ((uint64_t)width * (uint64_t)samples * (uint64_t)bit_depth + 7) / 8 * (uint64_t)height;
        uint64_t most = (uint64_t)st.st_size * 1032u + 1032u;
        if (pixel_bytes > most) {
            set_message(message, message_size,
                        "the header declares %u x %u pixels (%llu bytes of samples) but the file has only %lld bytes, "
                        "fewer than even the best deflate compression (1032:1) needs",
                        width, height, (unsigned long long)pixel_bytes, (long long)st.st_size);
            tpng_reader_close(reader);
            return TPNG_ERR_TRUNCATED;
        }
    }
    memset(info, 0, sizeof *info);
    info->width = width;
    info->height = height;
    info->file_bit_depth = bit_depth;
    info->file_color_type = color_type;
    info->interlaced = interlace != PNG_INTERLACE_NONE;
    info->has_trns = png_get_valid(reader->png, reader->info, PNG_INFO_tRNS) != 0;

    reader->bad_index = -1;
    reader->width = width;
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int entries = 0;
        if (!png_get_PLTE(reader->png, reader->info, &plte, &entries) || plte == NULL || entries <= 0 ||
            entries > 256) {
            set_message(message, message_size, "a palette image without a palette (PLTE)");
            tpng_reader_close(reader);
            return TPNG_ERR_CORRUPT;
        }
        reader->palette_entries = entries;
        for (int i = 0; i < entries; i++) {
            reader->palette[3 * i] = plte[i].red;
            reader->palette[3 * i + 1] = plte[i].green;
            reader->palette[3 * i + 2] = plte[i].blue;
        }
        if (bit_depth < 8) png_set_packing(reader->png); // one index per byte (tRNS alpha is not expanded)
    }
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(reader->png);
    if ((color_type & PNG_COLOR_MASK_ALPHA) != 0 || (info->has_trns && color_type != PNG_COLOR_TYPE_PALETTE)) {
        png_set_strip_alpha(reader->png);
    }
    if (bit_depth == 16 && host_is_little_endian()) png_set_swap(reader->png);
    reader->passes = png_set_interlace_handling(reader->png);
    png_read_update_info(reader->png, reader->info);

    info->channels = png_get_channels(reader->png, reader->info);
    info->bit_depth = png_get_bit_depth(reader->png, reader->info);
    info->row_bytes = png_get_rowbytes(reader->png, reader->info);
    if (reader->palette_entries > 0 && info->channels == 1 && info->bit_depth == 8 && info->row_bytes == width) {
        // Indices from libpng; RGB once `expand_palette_row` has run over each row.
        info->channels = 3;
        info->row_bytes = (size_t)width * 3;
    }
    if ((info->channels != 1 && info->channels != 3) || (info->bit_depth != 8 && info->bit_depth != 16) ||
        info->row_bytes != (size_t)width * (size_t)info->channels * (size_t)(info->bit_depth / 8)) {
        set_message(message, message_size, "unsupported layout after expansion: %d channels of %d bits",
                    info->channels, info->bit_depth);
        tpng_reader_close(reader);
        return TPNG_ERR_BIT_DEPTH;
    }
    reader->height = height;
    reader->interlaced = info->interlaced;
    *out = reader;
    return TPNG_OK;
}

int tpng_reader_read_rows(tpng_reader *reader, void *dst, uint32_t count, size_t stride, char *message,
                          size_t message_size) {
    if (reader == NULL || (dst == NULL && count > 0)) {
        set_message(message, message_size, "invalid argument");
        return TPNG_ERR_ARGUMENT;
    }
    if (reader->interlaced || reader->image_read || reader->finished || count > reader->height - reader->rows_read) {
        set_message(message, message_size, "cannot read %u rows here (interlaced: %d, %u of %u rows read)", count,
                    reader->interlaced, reader->rows_read, reader->height);
        return TPNG_ERR_STATE;
    }
    if (setjmp(png_jmpbuf(reader->png))) {
        reader->finished = 1; // libpng's state is undefined after an error
        return report(&reader->diag, 0, message, message_size);
    }
    for (uint32_t i = 0; i < count; i++) {
        png_bytep row = (png_bytep)dst + (size_t)i * stride;
        png_read_row(reader->png, row, NULL);
        if (reader->palette_entries > 0) expand_palette_row(reader, row, reader->rows_read);
        reader->rows_read++;
    }
    return palette_status(reader, message, message_size);
}

static int palette_status(const struct tpng_reader *reader, char *message, size_t size) {
    if (reader->bad_index < 0) return TPNG_OK;
    set_message(message, size,
                "pixel (x %u, y %u) has palette index %d, past the palette's %d colours (such pixels would "
                "decode as black)",
                reader->bad_x, reader->bad_y, reader->bad_index, reader->palette_entries);
    return TPNG_ERR_CORRUPT;
}

int tpng_reader_finish(tpng_reader *reader, char *message, size_t message_size) {
    if (reader == NULL) {
        set_message(message, message_size, "invalid argument");
        return TPNG_ERR_ARGUMENT;
    }
    if (reader->finished || reader->rows_read != reader->height) {
        set_message(message, message_size, "cannot finish: %u of %u rows read", reader->rows_read, reader->height);
        return TPNG_ERR_STATE;
    }
    reader->finished = 1;
    if (setjmp(png_jmpbuf(reader->png))) return report(&reader->diag, 0, message, message_size);
    png_read_end(reader->png, NULL);
    return TPNG_OK;
}

void tpng_reader_warnings(const tpng_reader *reader, char *out, size_t out_size) {
    if (out == NULL || out_size == 0) return;
    snprintf(out, out_size, "%s", reader != NULL ? reader->diag.warnings : "");
}

int tpng_reader_read_image(tpng_reader *reader, void *dst, size_t stride, char *message, size_t message_size) {
    if (reader == NULL || dst == NULL) {
        set_message(message, message_size, "invalid argument");
        return TPNG_ERR_ARGUMENT;
    }
    if (reader->rows_read != 0 || reader->image_read || reader->finished) {
        set_message(message, message_size, "read_image must be the first read");
        return TPNG_ERR_STATE;
    }
    reader->image_read = 1;
    reader->row_pointers = malloc((size_t)reader->height * sizeof(png_bytep));
    if (reader->row_pointers == NULL) {
        set_message(message, message_size, "out of memory for %u row pointers", reader->height);
        return TPNG_ERR_NOMEM;
    }
    for (uint32_t y = 0; y < reader->height; y++) reader->row_pointers[y] = (png_bytep)dst + (size_t)y * stride;
    if (setjmp(png_jmpbuf(reader->png))) {
        reader->finished = 1;
        free(reader->row_pointers);
        reader->row_pointers = NULL;
        return report(&reader->diag, 0, message, message_size);
    }
    // Each Adam7 pass delivers full-width rows into which libpng merges the
    // pass's pixels, so the caller's buffer is the only image-sized memory.
    for (int pass = 0; pass < reader->passes; pass++) {
        for (uint32_t y = 0; y < reader->height; y++) png_read_row(reader->png, reader->row_pointers[y], NULL);
    }
    reader->rows_read = reader->height;
    reader->finished = 1;
    png_read_end(reader->png, NULL);
    if (reader->palette_entries > 0) {
        for (uint32_t y = 0; y < reader->height; y++) expand_palette_row(reader, reader->row_pointers[y], y);
    }
    free(reader->row_pointers);
    reader->row_pointers = NULL;
    return palette_status(reader, message, message_size);
}

/// Whether Adam7 pass `pass` (0…6) has pixels in image row `y` (the pass's start row and row step).
static int adam7_pass_has_row(int pass, uint32_t y) {
    static const uint32_t start[7] = {0, 0, 4, 0, 2, 0, 1};
    static const uint32_t step[7] = {8, 8, 8, 4, 4, 2, 2};
    return y >= start[pass] && (y - start[pass]) % step[pass] == 0;
}

/// Reads (`writing` 0) or writes `size` bytes at `offset` of `fd`; a read past the end gives zeros (the
/// file is sized first, so that happens only if it was cut meanwhile). -1 with errno on failure.
static int file_row_io(int fd, uint8_t *row, size_t size, off_t offset, int writing) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = writing ? pwrite(fd, row + done, size - done, offset + (off_t)done)
                            : pread(fd, row + done, size - done, offset + (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) {
            if (writing) {
                errno = EIO;
                return -1;
            }
            memset(row + done, 0, size - done);
            return 0;
        }
        done += (size_t)n;
    }
    return 0;
}

static void free_file_row(struct tpng_reader *reader) {
    free(reader->file_row);
    reader->file_row = NULL;
}

int tpng_reader_read_image_fd(tpng_reader *reader, int fd, size_t stride, char *message, size_t message_size) {
    if (reader == NULL || fd < 0 || stride == 0) {
        set_message(message, message_size, "invalid argument");
        return TPNG_ERR_ARGUMENT;
    }
    if (reader->rows_read != 0 || reader->image_read || reader->finished) {
        set_message(message, message_size, "read_image_fd must be the first read");
        return TPNG_ERR_STATE;
    }
    size_t libpng_row = png_get_rowbytes(reader->png, reader->info);
    size_t slack = libpng_row > stride ? libpng_row - stride : 0;
    // Non-interlaced: rows are complete as read, so a band of them (about 1 MiB) is written at once.
    uint32_t band = 1;
    if (reader->passes == 1) {
        size_t rows = ((size_t)1 << 20) / stride;
        band = rows < 1 ? 1 : (rows > reader->height ? reader->height : (uint32_t)rows);
    }
    reader->image_read = 1;
    if (ftruncate(fd, (off_t)stride * (off_t)reader->height) != 0) goto output_error;
    reader->file_row = malloc((size_t)band * stride + slack);
    if (reader->file_row == NULL) {
        set_message(message, message_size, "out of memory for %u rows of %zu bytes", band, stride);
        reader->finished = 1;
        return TPNG_ERR_NOMEM;
    }
    memset(reader->file_row, 0, (size_t)band * stride + slack);
    if (setjmp(png_jmpbuf(reader->png))) {
        reader->finished = 1;
        free_file_row(reader);
        return report(&reader->diag, 0, message, message_size);
    }
    if (reader->passes == 1) {
        for (uint32_t y0 = 0; y0 < reader->height; y0 += band) {
            uint32_t count = reader->height - y0 < band ? reader->height - y0 : band;
            for (uint32_t i = 0; i < count; i++) {
                png_bytep row = reader->file_row + (size_t)i * stride;
                png_read_row(reader->png, row, NULL);
                if (reader->palette_entries > 0) expand_palette_row(reader, row, y0 + i);
            }
            if (file_row_io(fd, reader->file_row, (size_t)count * stride, (off_t)y0 * (off_t)stride, 1) != 0) {
                goto output_error;
            }
        }
    } else {
        // Each Adam7 pass merges its pixels into the rows it has: such a row is read back from the file,
        // merged and written again; libpng still sees every row of every pass (it counts them), the others
        // without a buffer. Memory is one row, whatever the image.
        for (int pass = 0; pass < reader->passes; pass++) {
            for (uint32_t y = 0; y < reader->height; y++) {
                if (!adam7_pass_has_row(pass, y)) {
                    png_read_row(reader->png, NULL, NULL);
                    continue;
                }
                off_t offset = (off_t)y * (off_t)stride;
                // (A row's first pass finds zeros in the file: no read. Every pixel is in one pass, so
                // whatever the buffer holds at the others' places is overwritten by their passes.)
                int merged = 0;
                for (int earlier = 0; earlier < pass; earlier++) merged = merged || adam7_pass_has_row(earlier, y);
                if (merged && file_row_io(fd, reader->file_row, stride, offset, 0) != 0) goto output_error;
                png_read_row(reader->png, reader->file_row, NULL);
                if (file_row_io(fd, reader->file_row, stride, offset, 1) != 0) goto output_error;
            }
        }
    }
    reader->rows_read = reader->height;
    reader->finished = 1;
    png_read_end(reader->png, NULL);
    if (reader->palette_entries > 0 && reader->passes > 1) {
        // Indices until the last pass: expanded now, row by row.
        for (uint32_t y = 0; y < reader->height; y++) {
            off_t offset = (off_t)y * (off_t)stride;
            if (file_row_io(fd, reader->file_row, stride, offset, 0) != 0) goto output_error;
            expand_palette_row(reader, reader->file_row, y);
            if (file_row_io(fd, reader->file_row, stride, offset, 1) != 0) goto output_error;
        }
    }
    free_file_row(reader);
    return palette_status(reader, message, message_size);
output_error:
    set_message(message, message_size, "cannot write the decoded rows to their file: %s", strerror(errno));
    reader->finished = 1;
    free_file_row(reader);
    return TPNG_ERR_OUTPUT;
}

// MARK: - Writer

struct tpng_writer {
    tpng_diag diag;
    FILE *file;
    png_structp png;
    png_infop info;
    uint32_t height;
    uint32_t rows_written;
    int failed;
};

static void on_write(png_structp png, png_bytep data, size_t length) {
    struct tpng_writer *writer = (struct tpng_writer *)png_get_io_ptr(png);
    if (fwrite(data, 1, length, writer->file) != length) {
        writer->diag.io_errno = errno != 0 ? errno : EIO;
        png_error(png, "write error");
    }
}

static void on_flush(png_structp png) {
    struct tpng_writer *writer = (struct tpng_writer *)png_get_io_ptr(png);
    if (fflush(writer->file) != 0) {
        writer->diag.io_errno = errno != 0 ? errno : EIO;
        png_error(png, "flush error");
    }
}

void tpng_writer_close(tpng_writer *writer) {
    if (writer == NULL) return;
    if (writer->png != NULL) png_destroy_write_struct(&writer->png, &writer->info);
    if (writer->file != NULL) fclose(writer->file);
    free(writer);
}

/// Creates the writer, its file and libpng structures (no setjmp needed: none of this longjmps).
static int writer_create(const char *path, struct tpng_writer **out, char *message, size_t message_size) {
    struct tpng_writer *writer = calloc(1, sizeof *writer);
    if (writer == NULL) {
        set_message(message, message_size, "out of memory");
        return TPNG_ERR_NOMEM;
    }
    writer->file = fopen(path, "wb");
    if (writer->file == NULL) {
        set_message(message, message_size, "cannot create: %s", strerror(errno));
        tpng_writer_close(writer);
        return TPNG_ERR_OPEN;
    }
    writer->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &writer->diag, on_error, on_warning);
    if (writer->png != NULL) writer->info = png_create_info_struct(writer->png);
    if (writer->png == NULL || writer->info == NULL) {
        set_message(message, message_size, "cannot create libpng write structures");
        tpng_writer_close(writer);
        return TPNG_ERR_NOMEM;
    }
    png_set_write_fn(writer->png, writer, on_write, on_flush);
    *out = writer;
    return TPNG_OK;
}

/// Flushes, fsyncs and closes the writer's file; reports the first failure.
static int writer_close_file(struct tpng_writer *writer, char *message, size_t message_size) {
    FILE *file = writer->file;
    writer->file = NULL;
    int failed_errno = 0;
    if (fflush(file) != 0) failed_errno = errno;
    if (failed_errno == 0 && fsync(fileno(file)) != 0 && errno != EINVAL && errno != EROFS) failed_errno = errno;
    if (fclose(file) != 0 && failed_errno == 0) failed_errno = errno;
    if (failed_errno != 0) {
        set_message(message, message_size, "cannot complete the file: %s", strerror(failed_errno));
        return TPNG_ERR_IO;
    }
    return TPNG_OK;
}

int tpng_writer_open(const char *path, uint32_t width, uint32_t height, int channels, int bit_depth,
                     int compression_level, tpng_writer **out, char *message, size_t message_size) {
    if (path == NULL || out == NULL || width == 0 || height == 0 || width > 0x7fffffffu || height > 0x7fffffffu ||
        (channels != 1 && channels != 3) || (bit_depth != 8 && bit_depth != 16) || compression_level < -1 ||
        compression_level > 9) {
        set_message(message, message_size, "invalid writer arguments: %u x %u, %d channels, %d bits, level %d",
                    width, height, channels, bit_depth, compression_level);
        return TPNG_ERR_ARGUMENT;
    }
    *out = NULL;
    struct tpng_writer *writer = NULL;
    int status = writer_create(path, &writer, message, message_size);
    if (status != TPNG_OK) return status;
    writer->height = height;
    if (setjmp(png_jmpbuf(writer->png))) {
        status = report(&writer->diag, 0, message, message_size);
        tpng_writer_close(writer);
        return status;
    }
    png_set_IHDR(writer->png, writer->info, width, height, bit_depth,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (compression_level >= 0) png_set_compression_level(writer->png, compression_level);
    png_write_info(writer->png, writer->info);
    if (bit_depth == 16 && host_is_little_endian()) png_set_swap(writer->png);
    *out = writer;
    return TPNG_OK;
}

int tpng_writer_write_row(tpng_writer *writer, const void *row, char *message, size_t message_size) {
    if (writer == NULL || row == NULL) {
        set_message(message, message_size, "invalid argument");
        return TPNG_ERR_ARGUMENT;
    }
    if (writer->failed || writer->file == NULL || writer->rows_written >= writer->height) {
        set_message(message, message_size, "cannot write row %u of %u here", writer->rows_written, writer->height);
        return TPNG_ERR_STATE;
    }
    if (setjmp(png_jmpbuf(writer->png))) {
        writer->failed = 1;
        return report(&writer->diag, 0, message, message_size);
    }
    png_write_row(writer->png, (png_const_bytep)row);
    writer->rows_written++;
    return TPNG_OK;
}

int tpng_writer_finish(tpng_writer *writer, char *message, size_t message_size) {
    if (writer == NULL) {
        set_message(message, message_size, "invalid argument");
        return TPNG_ERR_ARGUMENT;
    }
    if (writer->failed || writer->file == NULL || writer->rows_written != writer->height) {
        set_message(message, message_size, "cannot finish: %u of %u rows written", writer->rows_written,
                    writer->height);
        return TPNG_ERR_STATE;
    }
    if (setjmp(png_jmpbuf(writer->png))) {
        writer->failed = 1;
        return report(&writer->diag, 0, message, message_size);
    }
    png_write_end(writer->png, NULL);
    return writer_close_file(writer, message, message_size);
}

// MARK: - Raw writer (test images)

int tpng_write_raw(const char *path, uint32_t width, uint32_t height, int bit_depth, int color_type,
                   int interlaced, const void *rows, size_t stride, const uint8_t *palette_rgb,
                   int palette_entries, const uint8_t *trns, int trns_count, const uint16_t *trns_color,
                   char *message, size_t message_size) {
    if (path == NULL || rows == NULL || palette_entries < 0 || palette_entries > 256 || trns_count < 0 ||
        trns_count > 256) {
        set_message(message, message_size, "invalid argument");
        return TPNG_ERR_ARGUMENT;
    }
    struct tpng_writer *writer = NULL;
    int status = writer_create(path, &writer, message, message_size);
    if (status != TPNG_OK) return status;
    png_color palette[256];
    for (int i = 0; i < palette_entries; i++) {
        palette[i].red = palette_rgb[3 * i];
        palette[i].green = palette_rgb[3 * i + 1];
        palette[i].blue = palette_rgb[3 * i + 2];
    }
    png_color_16 color;
    memset(&color, 0, sizeof color);
    if (trns_color != NULL) {
        if (color_type == PNG_COLOR_TYPE_GRAY) {
            color.gray = trns_color[0];
        } else {
            color.red = trns_color[0];
            color.green = trns_color[1];
            color.blue = trns_color[2];
        }
    }
    if (setjmp(png_jmpbuf(writer->png))) {
        status = report(&writer->diag, 0, message, message_size);
        tpng_writer_close(writer);
        return status;
    }
    png_set_IHDR(writer->png, writer->info, width, height, bit_depth, color_type,
                 interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette_entries > 0) png_set_PLTE(writer->png, writer->info, palette, palette_entries);
    if (trns_count > 0) {
        png_set_tRNS(writer->png, writer->info, trns, trns_count, trns_color != NULL ? &color : NULL);
    }
    png_write_info(writer->png, writer->info);
    int passes = png_set_interlace_handling(writer->png);
    for (int pass = 0; pass < passes; pass++) {
        for (uint32_t y = 0; y < height; y++) png_write_row(writer->png, (png_const_bytep)rows + (size_t)y * stride);
    }
    png_write_end(writer->png, NULL);
    status = writer_close_file(writer, message, message_size);
    tpng_writer_close(writer);
    return status;
}

const char *tpng_library_version(void) { return png_get_libpng_ver(NULL); }
