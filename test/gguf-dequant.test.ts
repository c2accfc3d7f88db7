/**
 * Bit-exact dequantisation of every ggml type we read, and the reference quantisers `convert` uses.
 *
 * References, all computed outside this project and hard-coded here:
 * - REFERENCE_BLOCKS: one 256-value block per type, made by ggml's own quantisers (ggml_quantize_chunk,
 *   uniform importance matrix) from a seeded signal; `sha256` is the hash of gguf-py's float32
 *   dequantisation (quants.py, the fixtures' oracle), which ggml's dequantize_row_* matched bit for bit.
 * - FIXTURE_HASHES: sha256 of gguf-py's dequantisation of every tensor of each fixture file, in file order.
 * - QUANTIZER_HASHES: sha256 of ggml's quantize_row_*_ref output (built without FMA contraction) on
 *   quantizerInput() below.
 */
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openGguf } from '../src/formats/gguf-split.js';
import { UnsupportedError } from '../src/errors.js';
import { dequantizeGgml, GGML_TYPES, ggmlRowBytes, ggmlType } from '../src/tensor/ggml.js';
import { quantizeGgml, QUANTIZE_TYPES } from '../src/tensor/ggml-quantize.js';
import { iqGrid, KSIGNS_IQ2XS } from '../src/tensor/iq-tables.js';
import { f32ToF16 } from '../src/tensor/dtype.js';
import { FIXTURES, rng, shared } from './shared.js';

function sha256(bytes: ArrayBufferView): string {
  return createHash('sha256').update(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).digest('hex');
}

const REFERENCE_BLOCKS: Record<string, { b64: string; sha256: string; samples: Record<number, number> }> = {
  f16: { b64: 'aTQlJl+2sLfqNo6ocLf7uMWj6jpOO5YmbrhoLWu4VLVLoa2sRzbmLce6lTUWtBsxBCoiM0K2IjvSKr2xb6pFrtWqH7Rkus2rxbsVpa8wFygwMxmj9ycPOCupdq21OOuy3LRUNPY5aDpsLkesRTdouDq5fCu3uKGrFCmkLAmubKxfOvymKjv2NSsyGi15tOY1Ibj1OuopaCI0smesRrP+LVQs7SzZLRO56rQtJacvGzBoMgw6JrmdMyYfEKbCosM5Mp+JLTwmaKWlMKgygLQMvFu7JLR0tgQ4WDcVKdI2mjHetmG3yrlYMPsqaS4MMLMnOKyir1c527pGLqKlZivuOqw4MrZTNqksuzb6qpcgtDFfr9E1PzbWsBKsujFyLB4wlDXyKUespi1duTCwZ6n7qyuzqyx0qVIxO685q8arh7cHM/Wtf6aCNMUuoKfytfwyPDaMqMerwKAisVIhPLmXtM8twrruKXU05jgVKfkr3DTIrwm1fLjzFUY6bzdTuNy4ijH5pi03sTEFq+CvWC5+McGm7ShfuVymvCjNtc64pjY0rFg2uKXNnbEwnrrGMZwxrBQZqZY3VKAOp1E4pyz8KkMxWK2QtOw0jLnboQgqVzC5qJa4mjkzrfQomyuiLekt1LQNLjg6ubOvsdGph7cFMKC4IaCJK74pC7o5tlSupCw=', sha256: 'cfa7220ba067f278ed86f185681da305d0c9640514485e71bfb9396de1142216', samples: { 0: 0.275634765625, 1: 0.0240020751953125, 100: 0.1451416015625, 255: 0.072509765625 } },
  bf16: { b64: 'jT7FPMy+9r7dPhK97r4fv3m8XT9qP9M8Dr+tPQ2/qr4pvJa9yT69PVm/sz6DviM+QD1kPsi+ZD9aPTi+Tr3JvVu9hL5Nv3q9eb+jvBY+Az1mPmO8/zwCPyW9r70XP12+m76LPj8/TT/NPYm96T4Nvye/bz0Xv3S9Iz2VPcG9jr1MP+C8ZT+/PkU+oz2Pvr0+BL9fPz09TTxGvo29ab7APYs9nj27PSK/nb6mPPU9Az5NPkI/Jb90PuU7wrxYvDg/5ruxPcc8rbwVPlU+kL6Cv2u/hL7OvgE/6z4jPdo+Mz7cvuy+Ob8LPl89zT0BPvY8h730vSs/W7/JPbS8bT1ePxY/xr7KPpU91z5fvRM8Nj7svbo+yD4bvoK9Nz6OPQQ+sj4+PYm9tT0svwa+Lb1/vWW+lT0vvSo+571nvXm98b5hPr+90LyQPtk99Ly+vl8+yD4RvXm9GLwkvio8KL+Tvro9WL8+PY8+HT8jPX89nD75vaG+D7++Okk/7j4Kvxu/MT7fvOY+Nj5hvfy9yz0wPti8Hj0sv8u8GD26vhq/1T6Gvcs+t7y6uxY+VL85PjQ+ljojvfM+CrzivAo/lT1gPSg+q72Svp4+Mr87vEE9Cz4XvRO/Mz+mvR49cz20Pb09m77CPUc/d742vjq98b4BPhS/BLxxPTg9Qb/Hvsu9lT0=', sha256: '50281124be959347c7232ee47a7a0733c6ee620db4d11223d74faf3e30c92d34', samples: { 0: 0.275390625, 1: 0.0240478515625, 100: 0.1455078125, 255: 0.07275390625 } },
  q4_0: { b64: 'CrCGmFt89VisfYhhsRiMl4ybdS9YpuH3kHjJOCqYOHyIl3128a5xeHDltod7dW0Q6GiKiYoXCDBYSSiYiZqWgHF21RyciIv5OC3Pk32ZDWd4elecfaZ3enkqwi6aB4i76YiUunxYN4j2yDIlMy56yI2KpwepqoiI0YiI5JKcWK62eQulr4jYd+iOcYn4x5d3', sha256: '8e53f5a40efbb06855f191c00c3b12675209b953334343769d50f2bac42cc80d', samples: { 0: 0.25244140625, 1: -0.0, 100: 0.1259765625, 255: 0.09912109375 } },
  q4_1: { b64: 'SC+Wunp3tIMLp1OSh59P94JocmSAL1S7V6bh95B4yTgqiDh8h4d9dmku5rh+dn8KOGdzeoHvB4ZkZWTX0S8BvFhJKJiZmpaAgXblHJyJnPoyLRG5z4N9mQ1neHpWnH2mZ3p5Kbku27qaB5i76ZiVunxYOIj32DIlyi25upvpnpu5CLq7mZrymZr1o668Lku6WYf1WmF3OJknco6HCEh4iA==', sha256: '8f591ad7a73949594d811b78ab4fcc2c680f8579ac0f127e12f983945c28e86e', samples: { 0: 0.314453125, 1: -0.02685546875, 100: 0.09820556640625, 255: 0.05517578125 } },
  q5_0: { b64: 'Navu2VPkCxCX6fihWNvwwXAA+j8aJs0r4E9eMr9Mw98g8HJxVBBh+B8f6vx+q0J5OHTy8OG6XQ/l6tkxv8ADAQROQSw/+Pj0oJFQIBIjLAHy7Ko4FwEW02gp3eYLCo4X6SIK3/D0vSn5TN708lMeK50p/TgkHhBVsh8ZVOevbwDtgGRbAivPm97t83AIAz8eMjMA8ZQA8akVGEaqNgt5c23iBlpOEK/dwQzy8v+PLv4=', sha256: 'e493cd0253175f7ef0087b2dfed9eb6126b659e8a9ba75210276c7ecd538918d', samples: { 0: 0.281524658203125, 1: -0.0, 100: 0.1329345703125, 255: 0.04901123046875 } },
  q5_1: { b64: 'hivMuhEmrArj31gGBk6nFP4tju/1sOXZjCu2u+FfXjKwXNPvIPCDcVQQYfkQL/r9eyoLuZ0CAIvs7O4EYN739AK+DR3Zy8i+0ysbvD/4+PWhklEwIyQ8EAL9yjkoASj0MClhud3mSw6fJ/oyC98B9b4qCl3v9fJUuSq8up0p/TgkDhBVwh8ZZOevXwD9kGRLjimGuv+b3/8Xwi03YgB1dzIk4zIk+kVMdCoDusn0hoySHemlse9gEj70DQ0AcNEB', sha256: 'c912298a7a8808462ec4dc9707273ce20d4a54a7219b68e1bf2c0fc6e6b1b6a0', samples: { 0: 0.26715087890625, 1: 0.03204345703125, 100: 0.135040283203125, 255: 0.05517578125 } },
  q8_0: { b64: 'XR8mA8m9PPu/qf54fwSzDLPS//Y3DYox3BYHH8p8B+f58tQf+d6Y+IH9EwQd/gRC+/VN5NgjYWkN9zu4qwiz+AUJ9Pc4H3H8fzUbC9g0t3sHAuX24A0KCw2m1AMREhxrpSIB/f5mFSD/CwP9EhrdgY3gzT86BTUWysalEQcNEAT48VSUDP0HbWgdb7dLDlD2AiLqRUrj9CINGEIJ8xGB5/j01g74IOv19KfQHiHy/CoQ/MghO/v3/+gCntUOgQcqXAYJLu7RrAB2Rq+lrB4b/EUb+O0PGvwGmfwGyKRA9j39/xeBHBsA+kn//FMLCEUeG/LRMo/+CBb6onLzBgoOD88Pf9nj+bMVov8KB4XA8Aw=', sha256: 'f0adb166485a14b0fe961329fb3695245d5ed1f4d8cac57d1b94a619841d31b3', samples: { 0: 0.27324676513671875, 1: 0.021572113037109375, 100: 0.1435089111328125, 255: 0.0734710693359375 } },
  q2_k: { b64: 'jd/tjGvM/e5nubm8uuyrvLqVsKiSmUgoCXtb3ciZzJRhaS6OlKapoqJ2wSempaX1r2h7riuppa5tK8tpqZqCtmuy6mpsSiqqJaayqy5+YqGSKLYr', sha256: '94e012f7391507c8cbdfb8ca49005fd9979801ff41b6204dc85c73a2c19f9933', samples: { 0: 0.4464111328125, 1: -0.01776123046875, 100: 0.02471923828125, 255: 0.19427490234375 } },
  q3_k: { b64: 'at3pa+i/12P34ib/36+Pzf/dfPXtrvF669rX+u//38MDDAYickDWIyTAgIiTAJtOiIzD8C8D+T88Q33xAAEAANQPcdvFMBjXCcFBAQwjAztCJEBFWAOQ1IMMKAHPuAgJGSEr6xlrilfQ8D8wuCA=', sha256: 'cfda49135ab48a2af6e74b7dbfc193380ed07f1140c006fe58d10f33faf46801', samples: { 0: 0.21197509765625, 1: -0.0, 100: 0.2396240234375, 255: -0.0 } },
  q4_k: { b64: '4RcMJLv9tP+0+uf/imdfJ3pnFHMLh5OCp4+Px3J40mRXp+v4kHrFOSiJNH+Ihnd2jpaPipinYwoRb1fGxJXEp1dHJ5CTlpeHiH7gGZaGlv2vc425nYdYqsaMfYZ3iilZnAiXueCGl7d1WTeK9sc3Ipt5XqsZeIqbeSrieYqFg45ZjvlZa3A7myl5j4kJT3qK', sha256: '8b9c645f31b034245fff1fa4923bbce033aeb31e7e530afae42e90dd93574611', samples: { 0: 0.3128795623779297, 1: -0.02759075164794922, 100: 0.09474849700927734, 255: 0.05596160888671875 } },
  q5_k: { b64: 'yBMIJL7+tf+2/ej/u1dOBf1IXPx9StL2YleTasq5mthw0uN7ail66URX2PVqakjM88849gYONxRODR6fBfCl2b5d1eAg9IpxXxJo/h8r/v0MLB4EME7HBBLOrZ2JG4hOnp5OMBYtPx/w/MAhLQws+0/n+lIr/5FFfvn6Dd8FMqQpAh9TwB0Qb+uiUAX+n29FJ9KdVxHwBSfiRNPSBAoVHJEc4qO24GcnQ/IOAwJ/1AQ=', sha256: '9547a1cb97cc74dfc3826f6fee670aae3af2700ed1c06a48f65610ffaad6b49a', samples: { 0: 0.26859283447265625, 1: 0.03302764892578125, 100: 0.14491653442382812, 255: 0.04962158203125 } },
  q6_k: { b64: 'Rh8OMZHRoDYhEuAPcy2D3NDTwr3e9Lm6jgi+YA4WEiQOOBb+QW91EUeAQfDvHdNZ/BWisOzDvvYqTojyzh3kE4D1WozZo1CG9iwb+CP2TDnQ8v0EYQp+fQbjLgj7XT0qm0vfLvUf7qsjrg1A6NHAwsPBAqp3ITK7jATr4P0BTNqFpYJXkZZrGzpIWK2npa+WmtbRcWdZUl2dhT7YZaZqCmiXtGnYlmJpnuQEmmZJQXWbYhmqrInpaeWWcWrd/aFgcG2HYW5dgGxHrLGWrJtWXzSM', sha256: 'ae4929d174bf8f0456a7dd510bb2a7fc767ff426df751fc241cd8c626047b54b', samples: { 0: 0.287322998046875, 1: 0.0287322998046875, 100: 0.13134765625, 255: 0.07311344146728516 } },
  iq2_xxs: { b64: 'Jx7wczYR7uiUzFdM7gg/WaDLCAQRh8I4ht7StgaQydNh9ZkGHdKiBK2OTEiYvWav6MkNsmQisHJrsxwJS0Y2RTau', sha256: '23bde8c1714ec487f537f842df257bc88ec93d0de377238116d7ce55f4d32598', samples: { 0: 0.15020370483398438, 1: -0.15020370483398438, 100: 0.18625259399414062, 255: 0.12617111206054688 } },
  iq2_xs: { b64: 'NB5b3VKjZaYXyDt+j2TlAwq6CoSI4hcwnemQkytOCw6aVydEBhJjaJDrj8x4vThEbJ8JYPTLwlpGNj5sDBSNsmPi3q6t74nJuMo=', sha256: '1069a186fdc2bc0eb034dcda5da150e64f97c4bdedbf3a7430e90e92585617e1', samples: { 0: 0.1756744384765625, 1: -0.1756744384765625, 100: 0.1877899169921875, 255: 0.1514434814453125 } },
  iq2_s: { b64: 'wx2v+ZMZRNn0Cu3RGUEz/wtG/AaPM9n1+d4JHFRVSgzWj+zRU+Q/sqHNQnEYZMkHBysiGfT1Zt4CxzJtLRo2C3lzAxDBw8GYHADuz83fmurKyg==', sha256: '78f1082e9897106d4e827bcdbb112654c3b55a4574b03c0bafbcb5b0fc918a26', samples: { 0: 0.16317367553710938, 1: 0.16317367553710938, 100: 0.17442703247070312, 255: 0.14066696166992188 } },
  iq3_xxs: { b64: '/Ria0Dl/UR/2PDUFjFfo0FgAipoKDMlGXckA351LMQDSySxshkgCBWLJOkoBV0Q7JbtXPDXFCFAvRJoFYACJVwJD7uiUzD9ZoMvCOIbOydNh9aIErY5mr+j5sHJrkzZFNq4=', sha256: '497c9d522cf84b1259690f2c0beb9689ddb568350905342542d6fd76adbf7316', samples: { 0: 0.1826763153076172, 1: -0.06089210510253906, 100: 0.2265186309814453, 255: 0.15344810485839844 } },
  iq3_s: { b64: 'ahiBssMGnOz5BWcEGbD7gKYAE+YXGltvtZMA7T07WBnV3axwqXZwdW+cxZkCr9jHTLWZbUn/CiZJDjgEawC8rwMRSzSRxoCAAAHs0VPkP7KhzUJxGGTJBwcrIhn09WbeAscybS0aNgt5c+3/2r8=', sha256: '8c2c787b880f5096cb9b92126f0386471ffc48f2174aba3baf9c55b4db3f3183', samples: { 0: 0.2909660339355469, 1: 0.058193206787109375, 100: 0.06681442260742188, 255: 0.049571990966796875 } },
  iq1_s: { b64: '0ypYw74UyDAn/OkHvsw9UPrFU5LQT/Lj9bcN75GQyAvnaJBoq+bifOn85MKS0ezYo2Y=', sha256: '6a1fd497da9ef53187652d8c41a75423760057fd540e8fa611ec0bfecbfaa025', samples: { 0: 0.08663558959960938, 1: 0.08663558959960938, 100: -0.09996414184570312, 255: 0.08663558959960938 } },
  iq1_m: { b64: 'WMNtFMgwJfzpB77MPVD5xbGS0D3yZfW3De+RkMgL52ggTNuyQmPZ48Obig7Uy0Oy9tv3/+OsrSs=', sha256: '19780dff58eadcf0797bd03a261334aebeaf3f933d62766899c077eef37e6b34', samples: { 0: 0.08871841430664062, 1: 0.08871841430664062, 100: -0.10236740112304688, 255: -0.07506942749023438 } },
  iq4_nl: { b64: 'UJ+FmEx980i9bnhQwAh9p52c4R9XteH3kHjKOCqYKH2Hl312VJ9xeHDktodrZG0Q51iKiYsX1x9IORiYmZqVgHB15B2ciJz6kB3fk32ZDWd4e1adfaZne3kq6h6bB4i76YiUu2xHJ4j22CEkaR562I2Kpwapqoh40YiI45GdmZ7GeQu0r5jXZuiOcXn3x5d3', sha256: '21c62a9a2f8704e1a4347ceba9642c0a7329c6c88f853269008351993f755ba5', samples: { 0: 0.24993896484375, 1: -0.00714111328125, 100: 0.09952926635742188, 255: 0.06443023681640625 } },
  iq4_xs: { b64: '4YszwA4OSbaFmEx980i9bnhQwAh9p42cV7Xh95B4yjgqmCh9h5d9dnF4cOS2h2tkbRDnWIqJixdIORiYmZqVgHB15B2ciJz635N9mQ1neHtWnX2mZ3t5KpsHiLvpiJS7bEcniPbYISR62I2Kpwapqoh40YiI45GdxnkLtK+Y12bojnF598eXdw==', sha256: 'bfd0958c08ae97ce6bc028a9e487d060f8510bbac0e4e56275678a6ac11699d4', samples: { 0: 0.25246739387512207, 1: -0.0072133541107177734, 100: 0.10002517700195312, 255: 0.06492018699645996 } },
};

const FIXTURE_HASHES: Record<string, string> = {
  'mini-iq2_xs.gguf': 'a9f6f7dfce7b883d5fd33fc9cb7cdb40ca42da301914b86d9d8b2097d48c1133',
  'mini-iq3_s.gguf': '702f8022a1a9cd9abffcde0002b0e9740d3879598f21b249ba4255556ac7538f',
  'mini-iq3_xxs.gguf': '8cbab67a2eb6f37c132869159f08bf1cf87cc50a03e902c534ebb47a84684e8b',
  'mini-iq4_xs.gguf': '3c461f4d491b5e4488f2601d5b314f9a1a1eb1d67244f5756578e6a084086032',
  'mini-q2_k.gguf': 'ecbf8b5b1794bb35af1bd3d0f1769658dbc57847e793777a3da5c9d968752c2d',
  'mini-q3_k_m.gguf': '3e00222b479c171dbe5d50887030b9d9ad343e35a7c9cb7e0edc1d9c15235310',
  'mini-q4_0.gguf': '3e0a2bf6070001ad354c2e51c5eb78c89fd48d8b247cb7613822f690765ea6ff',
  'mini-q4_1.gguf': '7634dbb5259943a4e612a493bc6812aac54ddb1ad096d07db4d80214f72f54fd',
  'mini-q4_k_m.gguf': 'ecc23522945557c80d8462c9f07c02e69279710af1dc455dc6f74abc24b0d15e',
  'mini-q5_0.gguf': 'fdedc8439aaf669557907c6a440aa33417bd87e4d841d6498767fdd30e6f5d91',
  'mini-q5_1.gguf': 'd5475c586f3409f2f1c8c92ed4b6f35d90fbde0aa8c9855cd43c5ce0e6a88da9',
  'mini-q5_k_m.gguf': '3c71e6887c715425f90c0f5418a2fc790b2abcb1d1e9e3d2a6074e7d7bfb164f',
  'mini-q6_k.gguf': '5b667211fe24b537b8caadaba22dab5fda7c2b75654f38bc32ffa8fec125346e',
  'mini-q8_0.gguf': '8ab96535441d802a6edf7db8d8a6a7ee4321c6db5411f3288e57af24dcf2b2b4',
  'tiny-f32.gguf': '677ff9d85e137cb08ec4f4c608c4f6b892956cb7bb7c95783a2d68e43a302bad',
};

const QUANTIZER_HASHES: Record<string, string> = {
  f16: 'd741be653e884e84e97f7e5710448958f245e9b25faeed5ffdf5a26b2f8471f1',
  bf16: '3994a9fb0a137856ac50f574a64c1197d7bcbe9b0153ef3129af6c965e2ff81f',
  q8_0: 'ef4c94a2d1999df310d67fc1f919a08cf1cc5ed68e63d95157a319720b334bdf',
  q4_0: '3a9c883e2f0ce85a25ac846e653b4de7416ad7fe0ea40f791f495c866d39b03b',
  q4_k: 'd712c0a75b529a0fc39baeee970afe102e40bc9cfb910ec47bfa6de6acb26c03',
  q6_k: 'e991ea8198bc4c34c84903bc28b8ba8813d40370f506dd2b9af461e2c90f8b75',
};

/** 8 super-blocks of test signal: smooth heavy-tailed values, then the corner cases a quantiser must survive. */
function quantizerInput(): Float32Array {
  const r = rng(2024);
  const x = new Float32Array(256 * 8);
  for (let i = 0; i < x.length; i++) {
    const u = r() - 0.5;
    x[i] = u * u * u * 8 + (r() - 0.5) * 0.1;
  }
  x.fill(0, 256, 512); // an all-zero block
  for (let i = 512; i < 768; i++) x[i] = 1e-3 * (r() - 0.5); // tiny values: f16 scales near the subnormal range
  x[800] = 40; // one outlier
  for (let i = 1024; i < 1280; i++) x[i] = Math.abs(x[i]!); // all positive: the min clamps to 0
  for (let i = 1280; i < 1536; i++) x[i] = -Math.abs(x[i]!); // all negative
  x.fill(7, 1536, 1792); // constant
  return x;
}

describe('ggml dequantisation: reference blocks', () => {
  for (const [type, ref] of Object.entries(REFERENCE_BLOCKS)) {
    it(`${type} matches gguf-py / ggml bit for bit`, () => {
      const bytes = new Uint8Array(Buffer.from(ref.b64, 'base64'));
      assert.equal(bytes.length, ggmlRowBytes(type, 256));
      const out = new Float32Array(256);
      dequantizeGgml(type, bytes, 0, out, 0, 256);
      for (const [i, v] of Object.entries(ref.samples)) assert.equal(out[Number(i)], v, `value ${i}`);
      assert.equal(sha256(out), ref.sha256);
    });
  }

  it('covers every dequantisable type', () => {
    const covered = new Set(Object.keys(REFERENCE_BLOCKS).concat('f32'));
    for (const t of GGML_TYPES) assert.equal(covered.has(t.name), t.dequantizable, t.name);
  });

  it('dequantises at an offset inside a larger buffer', () => {
    const block = new Uint8Array(Buffer.from(REFERENCE_BLOCKS['q4_k']!.b64, 'base64'));
    const src = new Uint8Array(7 + block.length);
    src.set(block, 7);
    const a = new Float32Array(256);
    const b = new Float32Array(300);
    dequantizeGgml('q4_k', block, 0, a, 0, 256);
    dequantizeGgml('q4_k', src, 7, b, 44, 256);
    assert.deepEqual(b.subarray(44), a);
  });
});

describe('ggml dequantisation: hand-built blocks', () => {
  it('q8_0: d · q', () => {
    const b = new Uint8Array(34);
    b[0] = 0x00; b[1] = 0x38; // f16 0.5
    for (let j = 0; j < 32; j++) b[2 + j] = (j - 16) & 255;
    const out = new Float32Array(32);
    dequantizeGgml('q8_0', b, 0, out, 0, 32);
    assert.deepEqual(Array.from(out), Array.from({ length: 32 }, (_, j) => 0.5 * (j - 16)));
  });

  it('q4_0: low nibbles are values 0-15, high nibbles 16-31, offset 8', () => {
    const b = new Uint8Array(18);
    b[0] = 0x00; b[1] = 0x40; // f16 2
    for (let j = 0; j < 16; j++) b[2 + j] = j | ((15 - j) << 4);
    const out = new Float32Array(32);
    dequantizeGgml('q4_0', b, 0, out, 0, 32);
    for (let j = 0; j < 16; j++) {
      assert.equal(out[j], 2 * (j - 8));
      assert.equal(out[j + 16], 2 * (7 - j));
    }
  });

  it('q4_k: six-bit scale/min pairs, out = d·sc·q − dmin·m', () => {
    const b = new Uint8Array(144);
    b.set([0x00, 0x3c], 0); // d = 1
    b.set([0x00, 0x38], 2); // dmin = 0.5
    // sub-block j < 4: scale = scales[j] & 63, min = scales[j+4] & 63
    // sub-block j ≥ 4: scale = scales[j+4] & 15 | (scales[j-4] >> 6) << 4, min = scales[j+4] >> 4 | (scales[j] >> 6) << 4
    const sc = [1, 2, 3, 4, 17, 33, 49, 63];
    const mn = [5, 6, 7, 8, 20, 36, 52, 60];
    for (let j = 0; j < 8; j++) {
      if (j < 4) {
        b[4 + j]! |= sc[j]!;
        b[4 + j + 4]! |= mn[j]!;
      } else {
        b[4 + j + 4] = (sc[j]! & 15) | ((mn[j]! & 15) << 4);
        b[4 + j - 4]! |= (sc[j]! >> 4) << 6;
        b[4 + j]! |= (mn[j]! >> 4) << 6;
      }
    }
    for (let i = 0; i < 128; i++) b[16 + i] = (i % 16) | ((15 - (i % 16)) << 4);
    const out = new Float32Array(256);
    dequantizeGgml('q4_k', b, 0, out, 0, 256);
    for (let j = 0; j < 8; j++) {
      for (let l = 0; l < 32; l++) {
        const byte = b[16 + 32 * (j >> 1) + l]!;
        const q = j & 1 ? byte >> 4 : byte & 15;
        assert.equal(out[32 * j + l], sc[j]! * q - 0.5 * mn[j]!, `sub-block ${j} value ${l}`);
      }
    }
  });

  it('iq grids and sign table have their ggml first entries and parity', () => {
    assert.deepEqual(Array.from(iqGrid('iq2xxs').subarray(0, 8)), [8, 8, 8, 8, 8, 8, 8, 8]);
    assert.deepEqual(Array.from(iqGrid('iq3xxs').subarray(0, 4)), [4, 4, 4, 4]);
    assert.deepEqual(Array.from(iqGrid('iq3s').subarray(0, 4)), [1, 1, 1, 1]);
    assert.equal(iqGrid('iq1s').length, 2048 * 8);
    assert.equal(iqGrid('iq2s').length, 1024 * 8);
    for (let i = 0; i < 128; i++) {
      let ones = 0;
      for (let v = KSIGNS_IQ2XS[i]!; v; v >>= 1) ones += v & 1;
      assert.equal(ones % 2, 0);
      assert.equal(KSIGNS_IQ2XS[i]! & 127, i);
    }
  });

  it('unsupported and unknown types are typed errors naming the type', () => {
    assert.throws(() => dequantizeGgml('tq1_0', new Uint8Array(54), 0, new Float32Array(256), 0, 256), (e: unknown) => e instanceof UnsupportedError && /tq1_0/.test(e.message));
    assert.throws(() => ggmlType(77, 'blk.0.attn_q.weight'), (e: unknown) => e instanceof UnsupportedError && /blk\.0\.attn_q\.weight/.test(e.message) && /77/.test(e.message));
    assert.throws(() => ggmlRowBytes('q4_k', 100), UnsupportedError);
  });
});

describe('ggml dequantisation: every tensor of every fixture file', FIXTURES, () => {
  for (const [file, hash] of Object.entries(FIXTURE_HASHES)) {
    it(`${file} matches gguf-py`, () => {
      const model = openGguf(shared('fixtures', 'gguf', file));
      try {
        const h = createHash('sha256');
        for (const t of model.files[0]!.tensors) {
          const n = t.ne.reduce((a, b) => a * b, 1);
          const out = new Float32Array(n);
          dequantizeGgml(t.type.name, model.files[0]!.source.read(t.offset, t.byteLength), 0, out, 0, n);
          h.update(new Uint8Array(out.buffer));
        }
        assert.equal(h.digest('hex'), hash);
      } finally {
        model.close();
      }
    });
  }
});

describe('reference quantisers (quantize_row_*_ref)', () => {
  const x = quantizerInput();
  for (const type of QUANTIZE_TYPES) {
    if (type === 'f32') continue;
    it(`${type} writes ggml's bytes`, () => {
      const out = new Uint8Array(ggmlRowBytes(type, x.length));
      assert.equal(quantizeGgml(type, x, 0, out, 0, x.length), out.length);
      assert.equal(sha256(out), QUANTIZER_HASHES[type]);
    });
  }

  it('f32 is a byte copy and survives any output offset', () => {
    const out = new Uint8Array(3 + 4 * 64);
    quantizeGgml('f32', x, 10, out, 3, 64);
    const back = new Float32Array(64);
    dequantizeGgml('f32', out, 3, back, 0, 64);
    assert.deepEqual(back, x.subarray(10, 74));
  });

  it('round trips stay within each type\'s error bound', () => {
    const bounds: Record<string, number> = { f16: 2e-3, bf16: 1.6e-2, q8_0: 1.6e-2, q4_0: 0.25, q4_k: 0.2, q6_k: 0.05 };
    for (const [type, bound] of Object.entries(bounds)) {
      const out = new Uint8Array(ggmlRowBytes(type, x.length));
      quantizeGgml(type, x, 0, out, 0, x.length);
      const back = new Float32Array(x.length);
      dequantizeGgml(type, out, 0, back, 0, x.length);
      // k-quants share 6-bit sub-scales across a 256-value super-block, so their bound is relative to it
      const span = type.endsWith('_k') ? 256 : 32;
      for (let b = 0; b < x.length; b += span) {
        let amax = 0;
        let err = 0;
        for (let i = b; i < b + span; i++) {
          amax = Math.max(amax, Math.abs(x[i]!));
          err = Math.max(err, Math.abs(back[i]! - x[i]!));
        }
        assert.ok(err <= bound * amax + 1e-6, `${type} block at ${b}: error ${err} vs max ${amax}`);
      }
    }
  });

  it('refuses types it cannot write', () => {
    assert.throws(() => quantizeGgml('iq2_xs', x, 0, new Uint8Array(1000), 0, 256), UnsupportedError);
    assert.equal(f32ToF16(0.5), 0x3800);
  });
});
