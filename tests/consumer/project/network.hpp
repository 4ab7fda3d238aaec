// The network the consumer compiles ahead of time.
#pragma once

#include <kiln/kiln.hpp>

inline constexpr kiln::nn::Sequential consumer_net{kiln::input<4>, kiln::nn::Linear<4, 8>{}, kiln::nn::Tanh{},
                                                   kiln::nn::Linear<8, 2>{}};
