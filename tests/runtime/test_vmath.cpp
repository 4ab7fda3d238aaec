// vmath's exp, erf, expm1, log and log1p against the std:: functions in double: the error in ulps of the float
// result over a dense sweep of [-10, 10], tiny values of both signs (where expm1 and log1p must not cancel),
// subnormals, large values and the specials (NaN in gives NaN out, +-inf, +-0). The bounds are what the
// implementations meet with and without FMA, with margin; a formula like exp(x) - 1 or log(1 + x) misses them
// by orders of magnitude near 0.
#include "../support.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

using kiln::index_t;
namespace et = kiln::et;

namespace {

constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

// The inputs every function is swept over (x < -1 is part of log1p's and log's: there the answer is NaN).
std::vector<float> sweep_inputs() {
  std::vector<float> xs;
  for (int i = -100000; i <= 100000; ++i) xs.push_back(static_cast<float>(i * 1e-4));
  for (const float sign : {1.0f, -1.0f}) {
    for (double x = 1e-30; x < 1e-3; x *= 1.01) xs.push_back(sign * static_cast<float>(x));
    for (double x = 10; x < 3e38; x *= 1.01) xs.push_back(sign * static_cast<float>(x));
    for (const float x : {1e-45f, 3e-42f, 1e-39f, 1.1754942e-38f, std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::max(), inf, 0.0f})
      xs.push_back(sign * x);
  }
  // 300 floats either side of the reductions' edges, log1p's domain's, and where erf, expm1 saturate.
  for (const float edge : {-1.0f, -0.875f, 0.875f, -0.70710677f, 0.70710677f, -0.29289323f, 0.41421354f,
                           -0.34657359f, 0.34657359f, 1.0f, 1.4142135f, 3.92f, -17.3f, 88.72f, 88.3763f, -87.3365f,
                           -103.28f})
  {
    float up = edge, down = edge;
    for (int k = 0; k < 300; ++k) {
      xs.push_back(up = std::nextafter(up, inf));
      xs.push_back(down = std::nextafter(down, -inf));
    }
  }
  xs.push_back(qnan);
  xs.push_back(-qnan);
  return xs;
}

// Error of y against the exact ref, in ulps of ref as a float; 0 for matching NaNs and infinities, and
// infinite for a NaN, an infinity or an overflow where the other has none.
double ulp_error(float y, double ref) {
  if (std::isnan(ref) || std::isnan(y)) return std::isnan(ref) && std::isnan(y) ? 0 : INFINITY;
  if (std::isinf(y) || std::isinf(static_cast<float>(ref))) return y == static_cast<float>(ref) ? 0 : INFINITY;
  const double a = std::abs(ref);
  const int exponent = a < std::numeric_limits<float>::min() ? -126 : std::ilogb(a);
  return std::abs(y - ref) / std::ldexp(1.0, exponent - 23);
}

struct Worst {
  double ulps = 0;
  float x = 0, y = 0;
  double ref = 0;
};

template <class F, class Ref>
Worst worst_error(F f, Ref ref) {
  const std::vector<float> xs = sweep_inputs();
  std::vector<float> ys(xs.size());
  et::map_vectors(xs.data(), ys.data(), static_cast<index_t>(xs.size()), f);
  Worst w;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double r = ref(static_cast<double>(xs[i]));
    const double e = ulp_error(ys[i], r);
    if (e > w.ulps || std::isnan(e)) w = {e, xs[i], ys[i], r};
  }
  return w;
}

void require_within(const Worst& w, double max_ulps) {
  INFO("worst " << w.ulps << " ulp at x = " << w.x << ": " << w.y << " for " << w.ref);
  REQUIRE(w.ulps <= max_ulps);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// f(x), which must be the same in every lane.
template <class F>
float at(F f, float x) {
  et::vfloat v;
  for (int l = 0; l < et::simd_width; ++l) v[l] = x;
  const et::vfloat y = f(v);
  for (int l = 1; l < et::simd_width; ++l) REQUIRE(same_bits(y[l], y[0]));
  return y[0];
}

}  // namespace

// Down to the subnormal results (x < -87.3) and up to those just below FLT_MAX (88.38 < x < 88.72), where 2^n
// alone would not be a normal float.
TEST_CASE("vmath: vexp is within 1.5 ulp of exp, subnormal and near-overflow results included", "[vmath]") {
  require_within(worst_error([](et::vfloat x) { return et::vexp(x); }, [](double x) { return std::exp(x); }), 1.5);
}

// vexp_normal (what verf's tail takes) is vexp's result, bit for bit, wherever 2^n is a normal float.
TEST_CASE("vmath: vexp_normal gives vexp's bits in [-87, 88]", "[vmath]") {
  std::vector<float> xs;
  for (const float x : sweep_inputs())
    if (x >= -87.0f && x <= 88.0f) xs.push_back(x);
  std::vector<float> normal(xs.size()), full(xs.size());
  const auto n = static_cast<index_t>(xs.size());
  et::map_vectors(xs.data(), normal.data(), n, [](et::vfloat x) { return et::vexp_normal(x); });
  et::map_vectors(xs.data(), full.data(), n, [](et::vfloat x) { return et::vexp(x); });
  for (std::size_t i = 0; i < xs.size(); ++i) {
    INFO("x = " << xs[i] << ": " << normal[i] << " against " << full[i]);
    REQUIRE(same_bits(normal[i], full[i]));
  }
}

TEST_CASE("vmath: verf is within 1.5 ulp of erf", "[vmath]") {
  require_within(worst_error([](et::vfloat x) { return et::verf(x); }, [](double x) { return std::erf(x); }), 1.5);
}

TEST_CASE("vmath: vexpm1 is within 2 ulp of expm1, without cancellation near 0", "[vmath]") {
  require_within(worst_error([](et::vfloat x) { return et::vexpm1(x); }, [](double x) { return std::expm1(x); }),
                 2.0);
}

TEST_CASE("vmath: vlog1p is within 1.5 ulp of log1p, without cancellation near 0", "[vmath]") {
  require_within(worst_error([](et::vfloat x) { return et::vlog1p(x); }, [](double x) { return std::log1p(x); }),
                 1.5);
}

TEST_CASE("vmath: vlog is within 1 ulp of log", "[vmath]") {
  require_within(worst_error([](et::vfloat x) { return et::vlog(x); }, [](double x) { return std::log(x); }), 1.0);
}

TEST_CASE("vmath: NaN gives NaN, and infinities, zeros and domain edges as the std:: functions", "[vmath]") {
  const auto erf = [](et::vfloat x) { return et::verf(x); };
  const auto expm1 = [](et::vfloat x) { return et::vexpm1(x); };
  const auto log1p = [](et::vfloat x) { return et::vlog1p(x); };
  const auto log = [](et::vfloat x) { return et::vlog(x); };
  const auto exp = [](et::vfloat x) { return et::vexp(x); };
  const auto tanh = [](et::vfloat x) { return et::vtanh(x); };
  const auto sigmoid = [](et::vfloat x) { return et::vsigmoid(x); };
  for (const float x : {qnan, -qnan}) {  // the activations' clamps and compares must not make a number of NaN
    CHECK(std::isnan(at(exp, x)));
    CHECK(std::isnan(at(tanh, x)));
    CHECK(std::isnan(at(sigmoid, x)));
  }
  CHECK(at(exp, inf) == inf);
  CHECK(at(exp, 89.0f) == inf);
  CHECK(same_bits(at(exp, -inf), 0.0f));
  CHECK(same_bits(at(exp, -104.0f), 0.0f));
  CHECK(at(tanh, inf) == 1.0f);
  CHECK(at(tanh, -inf) == -1.0f);
  CHECK(at(sigmoid, inf) == 1.0f);
  CHECK(same_bits(at(sigmoid, -inf), 0.0f));
  for (const float x : {qnan, -qnan}) {
    CHECK(std::isnan(at(erf, x)));
    CHECK(std::isnan(at(expm1, x)));
    CHECK(std::isnan(at(log1p, x)));
    CHECK(std::isnan(at(log, x)));
  }
  CHECK(at(erf, inf) == 1.0f);
  CHECK(at(erf, -inf) == -1.0f);
  CHECK(at(erf, 3.92f) == 1.0f);
  CHECK(at(expm1, inf) == inf);
  CHECK(at(expm1, 89.0f) == inf);
  CHECK(std::isfinite(at(expm1, 88.72f)));
  CHECK(at(expm1, -inf) == -1.0f);
  CHECK(at(expm1, -20.0f) == -1.0f);
  CHECK(at(log1p, inf) == inf);
  CHECK(at(log1p, -1.0f) == -inf);
  CHECK(std::isnan(at(log1p, -1.5f)));
  CHECK(std::isnan(at(log1p, -inf)));
  CHECK(at(log, inf) == inf);
  CHECK(at(log, 0.0f) == -inf);
  CHECK(at(log, -0.0f) == -inf);
  CHECK(at(log, 1.0f) == 0.0f);
  CHECK(std::isnan(at(log, -1e-30f)));
  CHECK(std::isnan(at(log, -inf)));
  for (const float zero : {0.0f, -0.0f}) {  // odd functions keep the sign of zero
    CHECK(same_bits(at(erf, zero), zero));
    CHECK(same_bits(at(expm1, zero), zero));
    CHECK(same_bits(at(log1p, zero), zero));
  }
}

// vmin and vmax are a < b ? a : b and a > b ? a : b lane by lane (x86's minps and maxps): a NaN on either side,
// or two zeros, give b. ReLU is max(0, x) on them, so a NaN stays NaN and -0 stays -0, as torch.relu gives them.
TEST_CASE("vmath: vmin and vmax give b for a NaN or two zeros, and ReLU keeps NaN and -0", "[vmath][activations]") {
  const std::vector<float> values{qnan, -qnan, 0.0f, -0.0f, 1.0f, -1.0f, inf, -inf, 1e-45f};
  for (const float a : values)
    for (const float b : values) {
      INFO("a = " << a << ", b = " << b);
      const et::vfloat va = et::broadcast(a), vb = et::broadcast(b);
      CHECK(same_bits(et::vmax(va, vb)[et::simd_width - 1], a > b ? a : b));
      CHECK(same_bits(et::vmin(va, vb)[et::simd_width - 1], a < b ? a : b));
      const et::vpack<2> pa(a), pb(b);
      CHECK(same_bits(et::vmax(pa, pb).v[1][0], a > b ? a : b));
      CHECK(same_bits(et::vmin(pa, pb).v[1][0], a < b ? a : b));
    }
  const auto relu = [](auto x) { return et::ActivationOp<kiln::nn::ReLU>{}(x); };
  CHECK(same_bits(at(relu, -0.0f), -0.0f));
  CHECK(same_bits(at(relu, 0.0f), 0.0f));
  CHECK(same_bits(at(relu, -1.0f), 0.0f));
  CHECK(same_bits(at(relu, 2.5f), 2.5f));
  CHECK(std::isnan(at(relu, qnan)));
  CHECK(std::isnan(at(relu, -qnan)));
}

// A pack of four vectors (vpack, the maps' way of running four chains side by side) gives every lane the bits that
// its vector alone gets: a value's result does not depend on whether it fell in a pack or in a row's last vectors.
// A NaN is a NaN: which operand's NaN a product passes on (its sign) follows an operand order the compiler may swap.
// (The maps use packs only in optimized builds: et::packs_enabled.) The pack and the vector are computed in functions
// of their own, as the maps compute them on different values: inlined side by side on the same values, g++ shared
// their products and fused a shared product into one of its sums and not the other (erf, tanh with AVX-512).
template <class F, class V>
[[gnu::noinline]] V apply_apart(const F& f, V v) {
  return f(v);
}
template <class F>
void check_pack_equals_one_at_a_time(const char* name, F f) {
  if (!et::packs_enabled) return;
  INFO(name);
  std::vector<float> xs = sweep_inputs();
  constexpr index_t step = 4 * et::simd_width;
  xs.resize((xs.size() + step - 1) / step * step, 0.5f);
  for (std::size_t i = 0; i < xs.size(); i += step) {
    et::vpack<4> p;
    for (int k = 0; k < 4; ++k) p.v[k] = et::load(xs.data() + i + k * et::simd_width);
    const et::vpack<4> packed = apply_apart(f, p);
    for (int k = 0; k < 4; ++k) {
      const et::vfloat alone = apply_apart(f, p.v[k]);
      for (int l = 0; l < et::simd_width; ++l) {
        INFO("x = " << xs[i + k * et::simd_width + l]);
        REQUIRE((same_bits(packed.v[k][l], alone[l]) || (std::isnan(packed.v[k][l]) && std::isnan(alone[l]))));
      }
    }
  }
}

TEST_CASE("vmath: a pack of four vectors gives each vector's bits alone", "[vmath]") {
  check_pack_equals_one_at_a_time("exp", [](auto x) { return et::vexp(x); });
  check_pack_equals_one_at_a_time("exp_normal", [](auto x) {  // in its domain
    using V = decltype(x);
    return et::vexp_normal(et::vmax(et::vmin(x, et::splat<V>(80.0f)), et::splat<V>(-80.0f)));
  });
  check_pack_equals_one_at_a_time("expm1", [](auto x) { return et::vexpm1(x); });
  check_pack_equals_one_at_a_time("log", [](auto x) { return et::vlog(x); });
  check_pack_equals_one_at_a_time("log1p", [](auto x) { return et::vlog1p(x); });
  check_pack_equals_one_at_a_time("erf", [](auto x) { return et::verf(x); });
  check_pack_equals_one_at_a_time("tanh", [](auto x) { return et::vtanh(x); });
  check_pack_equals_one_at_a_time("sigmoid", [](auto x) { return et::vsigmoid(x); });
}

template <class Layer>
void check_activation_packs(const Layer& layer) {
  check_pack_equals_one_at_a_time(layer.repr().c_str(), [&](auto x) { return et::ActivationOp<Layer>{layer}(x); });
}

TEST_CASE("vmath: every activation gives the same bits in packs as one vector at a time", "[vmath][activations]") {
  std::apply([](auto... layers) { (check_activation_packs(layers), ...); }, kiln::nn::activations{});
  check_activation_packs(kiln::nn::GELU{.approximate = kiln::nn::GELUApproximate::tanh});  // a product into a sum
}
