/// The backend's own kernels, compiled for the device by NVRTC at start-up.
/// Each mirrors its CPU counterpart in `Engine/Kernels` (same window rules,
/// same order of operations where it matters); all use grid-stride loops over
/// 64-bit element counts. Tensors may hold a batch of images (`naive`'s patches), one
/// after another: kernels working plane by plane or element by element see the batch
/// as more channels (per-channel parameters are indexed by channel modulo `channels`),
/// those mixing channels (LRN across channels, softmax, InnerProduct) take `images`. Convolutions are not here: cuDNN (or im2col + cuBLAS) does them.
/// `CUDAKernelEmulationTests` compiles this source for the CPU (one thread, one block)
/// and checks kernels against the engine's reference loops on machines without a GPU.
enum CUDAKernelSource {
    static let names = [
        "bias_act", "activation", "affine", "pool2d", "lrn_across", "lrn_within",
        "softmax_channels", "inner_product", "eltwise", "im2col", "fill_outside", "space_to_batch",
        "batch_to_space", "gather_patches", "scatter_classes", "concat_images",
    ]

    static let code = #"""
        #define LOOP(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                                i += (long long)gridDim.x * blockDim.x)

        __device__ __forceinline__ float pow_neg(float v, float beta) {
            if (beta == 0.75f) { float r = sqrtf(v); return 1.0f / (r * sqrtf(r)); }
            return powf(v, -beta);
        }

        extern "C" {

        // Convolution epilogue, in place: + bias[c], then ReLU with `slope` when relu != 0.
        // `channels` per image; n counts every plane of the batch.
        __global__ void bias_act(float* y, const float* bias, long long plane, int channels, long long n, int has_bias,
                                 int relu, float slope) {
            LOOP(i, n) {
                float v = y[i];
                if (has_bias) v += bias[(i / plane) % channels];
                if (relu) v = v > 0.0f ? v : v * slope;
                y[i] = v;
            }
        }

        // kind 0: ReLU (slope), 1: sigmoid, 2: tanh, 3: ELU (slope: alpha), 4: softplus.
        __global__ void activation(const float* x, float* y, long long n, int kind, float slope) {
            LOOP(i, n) {
                float v = x[i];
                if (kind == 0) v = v > 0.0f ? v : v * slope;
                else if (kind == 1) v = 1.0f / (1.0f + expf(-v));
                else if (kind == 2) v = tanhf(v);
                else if (kind == 3) v = v > 0.0f ? v : slope * expm1f(v);
                else v = fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v)));
                y[i] = v;
            }
        }

        // BatchNorm and Scale: y = x * a[c] + b[c].
        __global__ void affine(const float* x, float* y, const float* a, const float* b, long long plane, int channels,
                               long long n) {
            LOOP(i, n) {
                int c = (int)((i / plane) % channels);
                y[i] = x[i] * a[c] + b[c];
            }
        }

        // MAX / AVE pooling with Caffe's window rules plus dilation: max over the taps
        // inside the input; average = sum of taps inside / taps inside the padded input,
        // which rows cy0..cy1 and columns cx0..cx1 narrow (the whole-image pass's, in a tile).
        __global__ void pool2d(const float* x, float* y, int channels, int in_h, int in_w, int out_h, int out_w,
                               int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int is_max,
                               int cy0, int cy1, int cx0, int cx1) {
            long long n = (long long)channels * out_h * out_w;
            LOOP(i, n) {
                int ox = (int)(i % out_w);
                int oy = (int)((i / out_w) % out_h);
                long long c = i / ((long long)out_w * out_h);
                const float* src = x + c * in_h * in_w;
                int y0 = oy * sh - ph, x0 = ox * sw - pw;
                float acc = is_max ? -3.402823466e+38f : 0.0f;
                int pad_y = 0, pad_x = 0;
                int ylo = cy0 > -ph ? cy0 : -ph, yhi = cy1 < in_h + ph ? cy1 : in_h + ph;
                int xlo = cx0 > -pw ? cx0 : -pw, xhi = cx1 < in_w + pw ? cx1 : in_w + pw;
                for (int ky = 0; ky < kh; ky++) { int t = y0 + ky * dh; if (t >= ylo && t < yhi) pad_y++; }
                for (int kx = 0; kx < kw; kx++) { int t = x0 + kx * dw; if (t >= xlo && t < xhi) pad_x++; }
                if (pad_y < 1) pad_y = 1;  // a window with no counted tap is never read
                if (pad_x < 1) pad_x = 1;
                for (int ky = 0; ky < kh; ky++) {
                    int iy = y0 + ky * dh;
                    if (iy < 0 || iy >= in_h) continue;
                    const float* row = src + (long long)iy * in_w;
                    for (int kx = 0; kx < kw; kx++) {
                        int ix = x0 + kx * dw;
                        if (ix < 0 || ix >= in_w) continue;
                        float v = row[ix];
                        acc = is_max ? fmaxf(acc, v) : acc + v;
                    }
                }
                y[i] = is_max ? acc : acc / (float)(pad_y * pad_x);
            }
        }

        // ACROSS_CHANNELS LRN with Caffe's sliding sum of squares over channels.
        __global__ void lrn_across(const float* x, float* y, int channels, long long plane, int size, float alpha_over_n,
                                   float k, float beta, int images) {
            int lo = (size - 1) / 2, hi = size - 1 - lo;
            LOOP(t, plane * images) {
                long long base = t / plane * channels * plane, p = t % plane + base;
                float acc = 0.0f;
                for (int j = 0; j < (channels < hi ? channels : hi); j++) { float v = x[j * plane + p]; acc += v * v; }
                for (int c = 0; c < channels; c++) {
                    if (c + hi < channels) { float v = x[(c + hi) * plane + p]; acc += v * v; }
                    if (c - lo - 1 >= 0) { float v = x[(c - lo - 1) * plane + p]; acc -= v * v; }
                    y[c * plane + p] = x[c * plane + p] * pow_neg(k + alpha_over_n * fmaxf(0.0f, acc), beta);
                }
            }
        }

        // WITHIN_CHANNEL LRN: window of size x size taps spaced by the dilation, zero outside.
        __global__ void lrn_within(const float* x, float* y, int channels, int h, int w, int size, float alpha_over_n2,
                                   float beta, int dh, int dw) {
            int half = (size - 1) / 2;
            LOOP(i, (long long)channels * h * w) {
                int ox = (int)(i % w);
                int oy = (int)((i / w) % h);
                const float* src = x + (i / ((long long)w * h)) * h * w;
                float s = 0.0f;
                for (int ky = -half; ky <= half; ky++) {
                    int iy = oy + ky * dh;
                    if (iy < 0 || iy >= h) continue;
                    for (int kx = -half; kx <= half; kx++) {
                        int ix = ox + kx * dw;
                        if (ix < 0 || ix >= w) continue;
                        float v = src[(long long)iy * w + ix];
                        s += v * v;
                    }
                }
                y[i] = x[i] * pow_neg(1.0f + alpha_over_n2 * s, beta);
            }
        }

        // Softmax over channels at every pixel, max subtracted.
        __global__ void softmax_channels(const float* x, float* y, int channels, long long plane, int images) {
            LOOP(t, plane * images) {
                long long p = t / plane * channels * plane + t % plane;
                float m = x[p];
                for (int c = 1; c < channels; c++) m = fmaxf(m, x[c * plane + p]);
                float s = 0.0f;
                for (int c = 0; c < channels; c++) { float e = expf(x[c * plane + p] - m); y[c * plane + p] = e; s += e; }
                for (int c = 0; c < channels; c++) y[c * plane + p] /= s;
            }
        }

        // InnerProduct on each image: y[n, o] = sum_i w[o, i] x[n, i] (+ bias[o]).
        __global__ void inner_product(const float* x, const float* w, const float* bias, float* y, int outputs,
                                      int inputs, int has_bias, int images) {
            LOOP(t, (long long)outputs * images) {
                int o = (int)(t % outputs);
                const float* row = w + o * (long long)inputs;
                const float* in = x + t / outputs * inputs;
                float s = 0.0f;
                for (int i = 0; i < inputs; i++) s += row[i] * in[i];
                y[t] = has_bias ? s + bias[o] : s;
            }
        }

        // Eltwise, one bottom at a time. op 0: product, 1: sum (coef), 2: max. first: y = bottom (· coef).
        __global__ void eltwise(float* y, const float* x, long long n, int op, float coef, int first) {
            LOOP(i, n) {
                float v = x[i];
                if (first) y[i] = op == 1 ? coef * v : v;
                else if (op == 0) y[i] *= v;
                else if (op == 1) y[i] += coef * v;
                else y[i] = fmaxf(y[i], v);
            }
        }

        // Padding where the whole-image pass pads (Tensor.fill(outside:with:)): every value of
        // each h×w plane outside rows [y0, y1) × columns [x0, x1) becomes `value`.
        __global__ void fill_outside(float* t, long long n, int h, int w, int y0, int y1, int x0, int x1, float value) {
            LOOP(i, n) {
                int x = (int)(i % w);
                int y = (int)((i / w) % h);
                if (y < y0 || y >= y1 || x < x0 || x >= x1) t[i] = value;
            }
        }

        // Column matrix for output rows row0 ..< row0 + rows: row (c*kh + ky)*kw + kx, column
        // (oy - row0)*out_w + ox holds x[c, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw] (0 outside).
        __global__ void im2col(const float* x, float* col, int channels, int in_h, int in_w, int out_w, int row0, int rows,
                               int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw) {
            long long ncol = (long long)rows * out_w;
            LOOP(i, ncol * channels * kh * kw) {
                long long n = i % ncol;
                int r = (int)(i / ncol);
                int kx = r % kw, ky = (r / kw) % kh, c = r / (kw * kh);
                int oy = row0 + (int)(n / out_w), ox = (int)(n % out_w);
                int iy = oy * sh + ky * dh - ph, ix = ox * sw + kx * dw - pw;
                col[i] = (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w) ? x[((long long)c * in_h + iy) * in_w + ix] : 0.0f;
            }
        }

        // Space-to-batch ("fragments") for a stride-1 convolution with dilation (dh, dw) and
        // padding (ph, pw): fragment q = a*dw + b holds rows a, a + dh, ... and columns b, b + dw, ...
        // of the padded input, so an undilated, unpadded convolution of fragment q gives the
        // output pixels (oy, ox) with oy % dh == a and ox % dw == b. f is [dh*dw][channels][fh][fw],
        // 0 outside the input (the convolution's zero padding, and the round-up to whole fragments).
        __global__ void space_to_batch(const float* x, float* f, int channels, int h, int w, int dh, int dw, int ph,
                                       int pw, int fh, int fw) {
            long long n = (long long)dh * dw * channels * fh * fw;
            LOOP(i, n) {
                int j = (int)(i % fw);
                int r = (int)((i / fw) % fh);
                long long t = i / ((long long)fw * fh);
                int c = (int)(t % channels);
                int q = (int)(t / channels);
                int iy = q / dw + dh * r - ph, ix = q % dw + dw * j - pw;
                f[i] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[((long long)c * h + iy) * w + ix] : 0.0f;
            }
        }

        // Back from fragments, with the convolution's epilogue (bias_act): g is [dh*dw][channels][gh][gw],
        // y[c, oy, ox] = g[(oy % dh)*dw + ox % dw][c][oy / dh][ox / dw] (+ bias[c], then ReLU).
        __global__ void batch_to_space(const float* g, float* y, int channels, int out_h, int out_w, int dh, int dw,
                                       int gh, int gw, const float* bias, int has_bias, int relu, float slope) {
            long long n = (long long)channels * out_h * out_w;
            LOOP(i, n) {
                int ox = (int)(i % out_w);
                int oy = (int)((i / out_w) % out_h);
                int c = (int)(i / ((long long)out_w * out_h));
                int q = (oy % dh) * dw + ox % dw;
                float v = g[(((long long)q * channels + c) * gh + oy / dh) * gw + ox / dw];
                if (has_bias) v += bias[c];
                if (relu) v = v > 0.0f ? v : v * slope;
                y[i] = v;
            }
        }

        // naive: the patches of map pixels first ..< first + count (map rows map_w wide) as a batch
        // of `batch` patches, [batch][channels][ph][pw]: pixel p's patch is the ph×pw window of x
        // (channels × h × w) at row p / map_w, column p % map_w; patches count ..< batch are zeros.
        __global__ void gather_patches(const float* x, float* out, int channels, int h, int w, int ph, int pw,
                                       long long first, int count, int batch, int map_w) {
            LOOP(i, (long long)batch * channels * ph * pw) {
                int s = (int)(i % pw);
                int r = (int)((i / pw) % ph);
                long long t = i / ((long long)pw * ph);
                int c = (int)(t % channels);
                long long n = t / channels, p = first + n;
                out[i] = n < count ? x[((long long)c * h + p / map_w + r) * w + p % map_w + s] : 0.0f;
            }
        }

        // Concat on a batch: each of `images` images of src (src_len values each) at `offset`
        // within the same image of dst (dst_len values each).
        __global__ void concat_images(const float* src, float* dst, long long src_len, long long dst_len,
                                      long long offset, int images) {
            LOOP(i, src_len * images) dst[i / src_len * dst_len + offset + i % src_len] = src[i];
        }

        // naive: a batch's class probabilities ([count][classes]) into the map (classes planes of
        // `plane` pixels), at pixels first ..< first + count.
        __global__ void scatter_classes(const float* probs, float* map, int classes, long long plane, long long first,
                                        int count) {
            LOOP(i, (long long)count * classes) {
                int c = (int)(i % classes);
                map[c * plane + first + i / classes] = probs[i];
            }
        }

        }
        """#
}
