// An emulated GPU for tests: the entry points of libcuda, NVRTC, cuDNN and cuBLAS that
// Tessera's CUDA backend (Sources/Shared/CUDA) binds, implemented on the CPU, so that
// the backend's own code (argument marshalling, shapes, batches, plans, fragments,
// transfer lanes, the im2col path) runs in CI on machines without a GPU.
//
// Compiled by Tests/IntegrationTests/EmulatedGPUTests.swift into one shared library
// that stands in, by symlinks, for libcuda.so.1, libnvrtc.so, libcudnn.so.9 and
// libcublas.so (TESSERA_CUDA_LIBRARY_PATH points at them). Everything is synchronous
// (streams and events are no-ops); device memory is host memory, filled with NaN
// when allocated so that reading what nobody wrote shows in the maps. "NVRTC"
// compiles the kernel source with the host C++ compiler as one block of one thread
// (each kernel's grid-stride loop then visits every element), and cuLaunchKernel
// calls a kernel with its parameters read from the source's signature. x86-64 only
// (the System V calling convention: integer and pointer arguments in order, floats
// in SSE registers).
//
// cuDNN's convolution is a plain loop (the reference the maps are compared with is
// the CPU engine, another implementation). cuDNN offers two algorithms: 0 (which
// asks for a workspace) and 1 (none); algorithm 0 reports NOT_SUPPORTED at run time
// for dilated convolutions, so the backend's fall-back to its next algorithm runs.

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PARAMS 24

// ---------------------------------------------------------------- driver

static int dummy_object;

int cuInit(unsigned flags) { (void)flags; return 0; }
int cuDriverGetVersion(int* v) { *v = 12040; return 0; }
int cuDeviceGetCount(int* n) {
    const char* e = getenv("TESSERA_EMULATED_GPUS");
    *n = e ? atoi(e) : 1;
    return 0;
}
int cuDeviceGet(int* d, int i) { *d = i; return 0; }
int cuDeviceGetName(char* name, int len, int d) {
    snprintf(name, (size_t)len, "Tessera emulated GPU %d (the CPU)", d);
    return 0;
}
int cuDeviceGetAttribute(int* v, int attribute, int d) {
    (void)d;
    *v = attribute == 75 ? 8 : 0;  // compute capability 8.0
    return 0;
}
int cuDevicePrimaryCtxRetain(void** ctx, int d) { (void)d; *ctx = &dummy_object; return 0; }
int cuCtxSetCurrent(void* ctx) { (void)ctx; return 0; }
// Device memory: TESSERA_EMULATED_GPU_MEMORY_MIB (default 8 GiB, all devices together);
// each block carries its size in a 64-byte header.
static size_t used_bytes;
static size_t memory_limit(void) {
    const char* e = getenv("TESSERA_EMULATED_GPU_MEMORY_MIB");
    return e ? (size_t)atoll(e) << 20 : 8ull << 30;
}
int cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    size_t used = __atomic_load_n(&used_bytes, __ATOMIC_SEQ_CST), limit = memory_limit();
    *free_bytes = used < limit ? limit - used : 0;
    *total = limit;
    return 0;
}

int cuMemAlloc_v2(uint64_t* p, size_t bytes) {
    if (__atomic_add_fetch(&used_bytes, bytes, __ATOMIC_SEQ_CST) > memory_limit()) {
        __atomic_sub_fetch(&used_bytes, bytes, __ATOMIC_SEQ_CST);
        return 2;  // CUDA_ERROR_OUT_OF_MEMORY
    }
    char* m = malloc(bytes + 64);
    if (!m) { __atomic_sub_fetch(&used_bytes, bytes, __ATOMIC_SEQ_CST); return 2; }
    *(size_t*)m = bytes;
    memset(m + 64, 0xff, bytes);  // NaN: what nobody wrote shows
    *p = (uint64_t)(uintptr_t)(m + 64);
    return 0;
}
int cuMemFree_v2(uint64_t p) {
    char* m = (char*)(uintptr_t)p - 64;
    __atomic_sub_fetch(&used_bytes, *(size_t*)m, __ATOMIC_SEQ_CST);
    free(m);
    return 0;
}
int cuMemAllocHost_v2(void** p, size_t bytes) { *p = malloc(bytes ? bytes : 1); return *p ? 0 : 2; }
int cuMemFreeHost(void* p) { free(p); return 0; }
int cuMemcpyHtoDAsync_v2(uint64_t dst, const void* src, size_t n, void* s) {
    (void)s; memcpy((void*)(uintptr_t)dst, src, n); return 0;
}
int cuMemcpyDtoHAsync_v2(void* dst, uint64_t src, size_t n, void* s) {
    (void)s; memcpy(dst, (void*)(uintptr_t)src, n); return 0;
}
int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void* s) {
    (void)s; memmove((void*)(uintptr_t)dst, (void*)(uintptr_t)src, n); return 0;
}
int cuStreamCreate(void** s, unsigned flags) { (void)flags; *s = &dummy_object; return 0; }
int cuStreamSynchronize(void* s) { (void)s; return 0; }
int cuEventCreate(void** e, unsigned flags) { (void)flags; *e = &dummy_object; return 0; }
int cuEventRecord(void* e, void* s) { (void)e; (void)s; return 0; }
int cuEventSynchronize(void* e) { (void)e; return 0; }
int cuStreamWaitEvent(void* s, void* e, unsigned flags) { (void)s; (void)e; (void)flags; return 0; }
int cuGetErrorString(int r, const char** text) {
    *text = r == 2 ? "out of memory (emulated)" : "error (emulated)";
    return 0;
}

// A loaded "module": the kernels compiled for the CPU, and their source (for the signatures).
typedef struct { void* library; char* source; } Module;
// A kernel: its entry point and the kind of each parameter: 'p' pointer, 'l' long long, 'i' int, 'f' float.
typedef struct { void* entry; int count; char kinds[MAX_PARAMS]; } Kernel;

static char* read_file(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* text = malloc((size_t)n + 1);
    if (fread(text, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(text); return NULL; }
    text[n] = 0;
    fclose(f);
    return text;
}

// The "CUBIN" is the path of the compiled library; its source lies beside it (path + ".src").
int cuModuleLoadData(void** module, const void* image) {
    const char* path = image;
    void* library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!library) { fprintf(stderr, "emulated cuModuleLoadData: %s\n", dlerror()); return 200; }
    char source_path[4096];
    snprintf(source_path, sizeof source_path, "%s.src", path);
    Module* m = malloc(sizeof *m);
    m->library = library;
    m->source = read_file(source_path);
    if (!m->source) return 200;
    *module = m;
    return 0;
}

int cuModuleGetFunction(void** function, void* module, const char* name) {
    Module* m = module;
    Kernel* k = calloc(1, sizeof *k);
    k->entry = dlsym(m->library, name);
    char pattern[256];
    snprintf(pattern, sizeof pattern, "void %s(", name);
    const char* at = strstr(m->source, pattern);
    if (!k->entry || !at) return 500;  // CUDA_ERROR_NOT_FOUND
    at += strlen(pattern);
    const char* end = strchr(at, ')');
    // Each parameter: a pointer if it has '*', else by its type's first word.
    while (at < end && k->count < MAX_PARAMS) {
        const char* comma = memchr(at, ',', (size_t)(end - at));
        const char* stop = comma ? comma : end;
        while (*at == ' ' || *at == '\n') at++;
        char kind;
        if (memchr(at, '*', (size_t)(stop - at))) kind = 'p';
        else if (!strncmp(at, "long long", 9)) kind = 'l';
        else if (!strncmp(at, "int", 3)) kind = 'i';
        else if (!strncmp(at, "float", 5)) kind = 'f';
        else return 500;
        k->kinds[k->count++] = kind;
        at = stop + 1;
    }
    *function = k;
    return 0;
}

typedef void (*GenericKernel)(
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, float, float, float, float,
    float, float, float);

int cuLaunchKernel(
    void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared,
    void* stream, void** params, void** extra) {
    (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shared; (void)stream; (void)extra;
    Kernel* k = function;
    int64_t g[20] = {0};
    float f[8] = {0};
    int ng = 0, nf = 0;
    for (int i = 0; i < k->count; i++) {
        switch (k->kinds[i]) {
        case 'p': case 'l': g[ng++] = *(int64_t*)params[i]; break;
        case 'i': g[ng++] = *(int32_t*)params[i]; break;
        case 'f': f[nf++] = *(float*)params[i]; break;
        }
        if (ng > 20 || nf > 8) return 1;
    }
    ((GenericKernel)k->entry)(
        g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15], g[16],
        g[17], g[18], g[19], f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]);
    return 0;
}

// ---------------------------------------------------------------- NVRTC

typedef struct { char* source; char path[4096]; char* log; } Program;

static const char* prelude =
    "#include <math.h>\n"
    "struct tessera_index { long long x; };\n"
    "static const tessera_index blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};\n"
    "#define __global__\n#define __device__\n#define __forceinline__ inline\n";

int nvrtcVersion(int* major, int* minor) { *major = 12; *minor = 4; return 0; }
int nvrtcCreateProgram(
    void** program, const char* source, const char* name, int headers, const char** h, const char** names) {
    (void)name; (void)headers; (void)h; (void)names;
    Program* p = calloc(1, sizeof *p);
    p->source = strdup(source);
    *program = p;
    return 0;
}

static int write_file(const char* path, const char* a, const char* b) {
    FILE* f = fopen(path, "wb");
    if (!f) return -1;
    fputs(a, f);
    if (b) fputs(b, f);
    return fclose(f);
}

// Compiled kernels are kept by their source's hash (/tmp/tessera-emulated-gpu-kernels-UID-HASH),
// so the many processes of a test run compile them once.
static uint64_t fnv1a(const char* text) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char* c = (const unsigned char*)text; *c; c++) h = (h ^ *c) * 1099511628211ull;
    return h;
}

int nvrtcCompileProgram(void* program, int count, const char** options) {
    (void)count; (void)options;
    Program* p = program;
    char cached[256];
    snprintf(cached, sizeof cached, "/tmp/tessera-emulated-gpu-kernels-%u-%016llx", (unsigned)getuid(),
             (unsigned long long)(fnv1a(prelude) ^ fnv1a(p->source)));
    snprintf(p->path, sizeof p->path, "%s/kernels.so", cached);
    if (access(p->path, R_OK) == 0) {
        p->log = strdup("");
        return 0;
    }
    char dir[] = "/tmp/tessera-emulated-gpu-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char cpp[4200], log[4200], command[16384];
    snprintf(cpp, sizeof cpp, "%s/kernels.cpp", dir);
    snprintf(p->path, sizeof p->path, "%s/kernels.so", dir);
    snprintf(log, sizeof log, "%s/compile.log", dir);
    char src[4200];
    snprintf(src, sizeof src, "%s.src", p->path);
    if (write_file(cpp, prelude, p->source) || write_file(src, p->source, NULL)) return 1;
    const char* compilers[] = {getenv("TESSERA_EMULATED_CXX"), "c++", "g++", "clang++"};
    int status = -1;
    for (int i = 0; i < 4 && status != 0; i++) {
        if (!compilers[i]) continue;
        snprintf(command, sizeof command, "%s -x c++ -O3 -shared -fPIC -o %s %s > %s 2>&1", compilers[i], p->path,
                 cpp, log);
        status = system(command);
    }
    p->log = read_file(log);
    if (status != 0) return 6;  // NVRTC_ERROR_COMPILATION
    // Published whole by one rename; a process that lost the race uses the winner's and removes its own.
    if (rename(dir, cached) == 0) {
        snprintf(p->path, sizeof p->path, "%s/kernels.so", cached);
    } else if (access(cached, R_OK) == 0) {
        const char* files[] = {cpp, src, log, p->path};
        for (int i = 0; i < 4; i++) unlink(files[i]);
        rmdir(dir);
        snprintf(p->path, sizeof p->path, "%s/kernels.so", cached);
    }
    return 0;
}
int nvrtcGetProgramLogSize(void* program, size_t* size) {
    Program* p = program;
    *size = (p->log ? strlen(p->log) : 0) + 1;
    return 0;
}
int nvrtcGetProgramLog(void* program, char* log) {
    Program* p = program;
    strcpy(log, p->log ? p->log : "");
    return 0;
}
int nvrtcGetCUBINSize(void* program, size_t* size) { *size = strlen(((Program*)program)->path) + 1; return 0; }
int nvrtcGetCUBIN(void* program, char* cubin) { strcpy(cubin, ((Program*)program)->path); return 0; }
int nvrtcDestroyProgram(void** program) {
    Program* p = *program;
    free(p->source);
    free(p->log);
    free(p);
    *program = NULL;
    return 0;
}
const char* nvrtcGetErrorString(int r) { return r == 6 ? "NVRTC_ERROR_COMPILATION (emulated)" : "error (emulated)"; }

// ---------------------------------------------------------------- cuDNN

typedef struct { int n, c, h, w; } TensorDesc;
typedef struct { int k, c, h, w; } FilterDesc;
typedef struct { int ph, pw, sh, sw, dh, dw, groups; } ConvDesc;

size_t cudnnGetVersion(void) { return 90100; }
int cudnnCreate(void** handle) { *handle = &dummy_object; return 0; }
int cudnnSetStream(void* handle, void* stream) { (void)handle; (void)stream; return 0; }
const char* cudnnGetErrorString(int r) {
    return r == 9 ? "CUDNN_STATUS_NOT_SUPPORTED (emulated)" : r == 3 ? "CUDNN_STATUS_BAD_PARAM (emulated)"
                                                                     : "error (emulated)";
}
int cudnnCreateTensorDescriptor(void** d) { *d = calloc(1, sizeof(TensorDesc)); return 0; }
int cudnnCreateFilterDescriptor(void** d) { *d = calloc(1, sizeof(FilterDesc)); return 0; }
int cudnnCreateConvolutionDescriptor(void** d) {
    ConvDesc* c = calloc(1, sizeof *c);
    c->groups = 1;
    *d = c;
    return 0;
}
int cudnnDestroyTensorDescriptor(void* d) { free(d); return 0; }
int cudnnDestroyFilterDescriptor(void* d) { free(d); return 0; }
int cudnnDestroyConvolutionDescriptor(void* d) { free(d); return 0; }
int cudnnSetTensor4dDescriptor(void* d, int format, int type, int n, int c, int h, int w) {
    if (format != 0 || type != 0 || n < 1 || c < 1 || h < 1 || w < 1) return 3;
    *(TensorDesc*)d = (TensorDesc){n, c, h, w};
    return 0;
}
int cudnnSetFilter4dDescriptor(void* d, int type, int format, int k, int c, int h, int w) {
    if (format != 0 || type != 0 || k < 1 || c < 1 || h < 1 || w < 1) return 3;
    *(FilterDesc*)d = (FilterDesc){k, c, h, w};
    return 0;
}
int cudnnSetConvolution2dDescriptor(void* d, int ph, int pw, int sh, int sw, int dh, int dw, int mode, int type) {
    if (mode != 1 || type != 0 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0) return 3;
    ConvDesc* c = d;
    c->ph = ph; c->pw = pw; c->sh = sh; c->sw = sw; c->dh = dh; c->dw = dw;
    return 0;
}
int cudnnSetConvolutionGroupCount(void* d, int groups) {
    if (groups < 1) return 3;
    ((ConvDesc*)d)->groups = groups;
    return 0;
}
int cudnnSetConvolutionMathType(void* d, int type) { (void)d; return type == 0 || type == 3 ? 0 : 3; }
int cudnnGetConvolution2dForwardOutputDim(void* conv, void* x, void* w, int* n, int* c, int* h, int* wo) {
    ConvDesc* cd = conv; TensorDesc* xd = x; FilterDesc* fd = w;
    if (xd->c != fd->c * cd->groups) return 3;
    *n = xd->n;
    *c = fd->k;
    *h = (xd->h + 2 * cd->ph - (cd->dh * (fd->h - 1) + 1)) / cd->sh + 1;
    *wo = (xd->w + 2 * cd->pw - (cd->dw * (fd->w - 1) + 1)) / cd->sw + 1;
    return *h > 0 && *wo > 0 ? 0 : 3;
}
static const size_t workspace0 = 4096;

// cudnnConvolutionFwdAlgoPerf_t: algo (int), status (int), time (float), memory (size_t), ... (48 bytes).
static int algorithms(int requested, int* returned, void* perf) {
    char* p = perf;
    int n = requested < 2 ? requested : 2;
    memset(p, 0, 48 * (size_t)n);
    for (int i = 0; i < n; i++) {
        *(int*)(p + 48 * i) = i;
        *(float*)(p + 48 * i + 8) = 1.0f + i;
        *(size_t*)(p + 48 * i + 16) = i == 0 ? workspace0 : 0;
    }
    *returned = n;
    return 0;
}
int cudnnGetConvolutionForwardAlgorithm_v7(
    void* h, void* x, void* w, void* c, void* y, int requested, int* returned, void* perf) {
    (void)h; (void)x; (void)w; (void)c; (void)y;
    return algorithms(requested, returned, perf);
}
int cudnnFindConvolutionForwardAlgorithm(
    void* h, void* x, void* w, void* c, void* y, int requested, int* returned, void* perf) {
    (void)h; (void)x; (void)w; (void)c; (void)y;
    return algorithms(requested, returned, perf);
}
int cudnnGetConvolutionForwardWorkspaceSize(void* h, void* x, void* w, void* c, void* y, int algo, size_t* bytes) {
    (void)h; (void)x; (void)w; (void)c; (void)y;
    *bytes = algo == 0 ? workspace0 : 0;
    return 0;
}

int cudnnConvolutionForward(
    void* handle, const void* alpha, void* xdesc, uint64_t xp, void* wdesc, uint64_t wp, void* cdesc, int algo,
    uint64_t workspace, size_t workspace_bytes, const void* beta, void* ydesc, uint64_t yp) {
    (void)handle;
    TensorDesc* xd = xdesc; TensorDesc* yd = ydesc; FilterDesc* fd = wdesc; ConvDesc* cd = cdesc;
    int n, k, oh, ow;
    if (cudnnGetConvolution2dForwardOutputDim(cd, xd, fd, &n, &k, &oh, &ow)) return 3;
    if (yd->n != n || yd->c != k || yd->h != oh || yd->w != ow) return 3;
    if (algo == 0 && (cd->dh > 1 || cd->dw > 1)) return 9;  // NOT_SUPPORTED: the backend tries its next
    if (algo == 0 && (workspace_bytes < workspace0 || !workspace)) return 3;
    const float* x = (const float*)(uintptr_t)xp;
    const float* w = (const float*)(uintptr_t)wp;
    float* y = (float*)(uintptr_t)yp;
    float a = *(const float*)alpha, b = *(const float*)beta;
    int groups = cd->groups, cg = fd->c, kg = k / groups;
    float* row = malloc(sizeof(float) * (size_t)ow);
    for (int img = 0; img < n; img++) {
        for (int o = 0; o < k; o++) {
            int g = o / kg;
            for (int oy = 0; oy < oh; oy++) {
                for (int ox = 0; ox < ow; ox++) row[ox] = 0;
                for (int c = 0; c < cg; c++) {
                    const float* plane = x + ((size_t)img * xd->c + (size_t)g * cg + c) * xd->h * xd->w;
                    for (int ky = 0; ky < fd->h; ky++) {
                        int iy = oy * cd->sh - cd->ph + ky * cd->dh;
                        if (iy < 0 || iy >= xd->h) continue;
                        for (int kx = 0; kx < fd->w; kx++) {
                            float wv = w[(((size_t)o * cg + c) * fd->h + ky) * fd->w + kx];
                            // Outputs whose tap lies inside the row: ix = ox * sw + x0 in [0, w).
                            int x0 = kx * cd->dw - cd->pw;
                            int lo = x0 >= 0 ? 0 : (-x0 + cd->sw - 1) / cd->sw;
                            int hi = x0 >= xd->w ? 0 : (xd->w - 1 - x0) / cd->sw + 1;
                            if (hi > ow) hi = ow;
                            const float* in = plane + (size_t)iy * xd->w + x0;
                            if (cd->sw == 1) {
                                for (int ox = lo; ox < hi; ox++) row[ox] += wv * in[ox];
                            } else {
                                for (int ox = lo; ox < hi; ox++) row[ox] += wv * in[(size_t)ox * cd->sw];
                            }
                        }
                    }
                }
                float* out = y + (((size_t)img * k + o) * oh + oy) * ow;
                for (int ox = 0; ox < ow; ox++) out[ox] = a * row[ox] + (b != 0 ? b * out[ox] : 0);
            }
        }
    }
    free(row);
    return 0;
}

// ---------------------------------------------------------------- cuBLAS

// TESSERA_EMULATED_CUBLAS_CREATE=fail: a cuBLAS that loads but cannot start (a newer
// major than the driver's, say): CUBLAS_STATUS_NOT_INITIALIZED.
int cublasCreate_v2(void** handle) {
    const char* fail = getenv("TESSERA_EMULATED_CUBLAS_CREATE");
    if (fail && strcmp(fail, "fail") == 0) return 1;
    *handle = &dummy_object;
    return 0;
}
int cublasSetStream_v2(void* handle, void* stream) { (void)handle; (void)stream; return 0; }
int cublasSetMathMode(void* handle, int mode) { (void)handle; (void)mode; return 0; }

// Column-major C = alpha op(A) op(B) + beta C (op: 0 none, 1 transpose).
int cublasSgemm_v2(
    void* handle, int ta, int tb, int m, int n, int k, const float* alpha, uint64_t ap, int lda, uint64_t bp, int ldb,
    const float* beta, uint64_t cp, int ldc) {
    (void)handle;
    // Only the benchmark's sgemm peak asks for this much (8192³): the emulation is for
    // logic, not speed, so it returns at once (scripts/device-dry-run.sh runs the benchmark).
    if (m >= 4096 && n >= 4096 && k >= 4096) return 0;
    const float* A = (const float*)(uintptr_t)ap;
    const float* B = (const float*)(uintptr_t)bp;
    float* C = (float*)(uintptr_t)cp;
    float* column = malloc(sizeof(float) * (size_t)(m > 0 ? m : 1));
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) column[i] = 0;
        for (int l = 0; l < k; l++) {
            float bv = tb ? B[j + (size_t)l * ldb] : B[l + (size_t)j * ldb];
            for (int i = 0; i < m; i++) column[i] += (ta ? A[l + (size_t)i * lda] : A[i + (size_t)l * lda]) * bv;
        }
        for (int i = 0; i < m; i++) {
            float* c = C + i + (size_t)j * ldc;
            *c = *alpha * column[i] + (*beta != 0 ? *beta * *c : 0);
        }
    }
    free(column);
    return 0;
}
