// CSlideIO: the only code that calls libtiff.
//
// Swift cannot call libtiff's varargs tag functions (TIFFGetField, TIFFSetField) nor implement its varargs
// error handlers, so both live here. Every handle gets its own error and warning handlers (TIFFOpenExt), which
// count and record what libtiff says instead of printing it. The counts matter: libtiff reports a corrupt JPEG
// tile as a successful read and signals the damage only through those handlers, so a tile read succeeds here
// only when libtiff returned the full size AND no handler was called during the read.
#ifndef TESSERA_CSLIDEIO_H
#define TESSERA_CSLIDEIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TSL_OK = 0,
    TSL_ERR_OPEN = 1,        ///< libtiff could not open the file or read its first directory
    TSL_ERR_DIRECTORY = 2,   ///< no such directory / SubIFD, or it could not be read
    TSL_ERR_DECODE = 3,      ///< a tile or strip failed to decode, or decoding raised an error or warning
    TSL_ERR_ARGUMENT = 4,    ///< a bug in the caller
} tsl_status;

typedef struct tsl_tiff tsl_tiff;

/// What one directory (IFD) holds, as far as reading pixels needs.
typedef struct {
    uint32_t width;
    uint32_t height;
    int tiled;                  ///< 1: tiled; 0: striped
    uint32_t tile_width;        ///< tiled: the tile size; striped: the image width
    uint32_t tile_height;       ///< tiled: the tile size; striped: rows per strip (clamped to the height)
    uint16_t samples_per_pixel;
    uint16_t bits_per_sample;
    uint16_t sample_format;     ///< SAMPLEFORMAT_*, 1 (unsigned) when absent
    uint16_t photometric;       ///< PHOTOMETRIC_*
    uint16_t planar_config;     ///< 1 contiguous, 2 separate
    uint16_t compression;       ///< COMPRESSION_*
    int codec_configured;       ///< this libtiff build can decode `compression`
    uint16_t extra_samples;     ///< number of ExtraSamples
    uint16_t alpha_samples;     ///< how many of them are alpha (associated or not); the rest are data
    uint32_t subfile_type;      ///< NewSubfileType (bit 0: reduced-resolution image)
    uint16_t resolution_unit;   ///< 1 none, 2 inch, 3 centimetre; 0 when absent
    double x_resolution;        ///< pixels per unit; 0 when absent
    double y_resolution;
    uint32_t chunk_count;       ///< tiles or strips in the directory
    int64_t chunk_size;         ///< decoded bytes of a full tile or strip (after JPEGCOLORMODE_RGB for YCbCr JPEG)
    uint16_t subifd_count;      ///< entries of the SubIFDs tag
} tsl_dir_info;

/// Opens `path` read-only without memory mapping (mode "rm": a file truncated while mapped would raise SIGBUS,
/// and libtiff then reports a short read instead of a silent -1). Reads directory 0.
int tsl_tiff_open(const char *path, tsl_tiff **out, char *message, size_t message_size);
void tsl_tiff_close(tsl_tiff *tiff);
// Drops libtiff's process-wide warning handler (stderr): a library that opens TIFFs itself (OpenSlide)
// then prints no raw lines; Tessera's own handles report through their per-file handlers.
void tsl_tiff_quiet_global_warnings(void);

/// Number of directories in the main IFD chain.
int tsl_tiff_directory_count(tsl_tiff *tiff);

/// Makes directory `index` (main chain) or the IFD at `offset` (a SubIFD) current, then describes it. For a
/// YCbCr JPEG directory it first asks libtiff to convert to RGB (JPEGCOLORMODE_RGB), so that tile reads
/// deliver interleaved RGB; `chunk_size` is measured after that.
int tsl_tiff_select_directory(tsl_tiff *tiff, int index, tsl_dir_info *info, char *message, size_t message_size);
int tsl_tiff_select_subifd(tsl_tiff *tiff, uint64_t offset, tsl_dir_info *info, char *message,
                           size_t message_size);

/// Copies up to `capacity` SubIFD offsets of the current directory; returns how many it has.
int tsl_tiff_subifd_offsets(tsl_tiff *tiff, uint64_t *offsets, int capacity);

/// Copies the current directory's ImageDescription (NUL-terminated, cut to `size`); returns 0 if absent.
int tsl_tiff_description(tsl_tiff *tiff, char *buffer, size_t size);

/// File offset and byte count of tile/strip `index` of the current directory; 0 on success.
int tsl_tiff_chunk_location(tsl_tiff *tiff, uint32_t index, uint64_t *offset, uint64_t *byte_count);

/// Decodes tile or strip `index` of the current directory into `buffer` (`size` bytes: a full tile or strip).
/// Returns the number of bytes decoded, or -1 with the reason in `message`. Also -1 when libtiff returned
/// data but an error or warning handler was called during the read (a corrupt JPEG tile), and for a deflate
/// chunk whose stored stream does not inflate to its end with a correct Adler-32 (libtiff stops reading it
/// once the chunk is full, so damage after that point, or a wrong checksum, went unseen).
int64_t tsl_tiff_read_chunk(tsl_tiff *tiff, uint32_t index, void *buffer, size_t size, char *message,
                            size_t message_size);

/// Writes `message` with the first error and warning libtiff reported since the last reset.
void tsl_tiff_last_messages(tsl_tiff *tiff, char *message, size_t message_size);

/// How many errors, and warnings of data it could not read (an IO error reading a tag of a truncated
/// file; not an unknown tag), libtiff reported since the last reset (selecting a directory resets),
/// with the first in `message` when there is one.
int tsl_tiff_io_problem(tsl_tiff *tiff, char *message, size_t message_size);

#ifdef __cplusplus
}
#endif

#endif
