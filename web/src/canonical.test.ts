import { describe, expect, it } from "vitest";
import { CanonicalError, canonicalize, canonicalBytes } from "./canonical";
import { hex } from "./b64";

// docs/protocol.md section 2.5.
describe("canonical JSON (RFC 8785)", () => {
  it("example 1: RFC 8785's own example", () => {
    const input = String.raw`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }`;
    expect(canonicalize(JSON.parse(input))).toBe(
      String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
    );
  });

  it("example 2: keys sorted by UTF-16 code units", () => {
    const input = String.raw`{"\u20ac":"Euro","a":1,"B":2,"\ufb33":"Dalet","\ud83d\ude00":"Grin","\u00e9":3,"\r":4}`;
    const bytes = canonicalBytes(JSON.parse(input));
    expect(hex(bytes)).toBe(
      (
        "7b 22 5c 72 22 3a 34 2c 22 42 22 3a 32 2c 22 61 22 3a 31 2c 22 c3 a9 22 3a 33 2c 22 e2 82 " +
        "ac 22 3a 22 45 75 72 6f 22 2c 22 f0 9f 98 80 22 3a 22 47 72 69 6e 22 2c 22 ef ac b3 22 3a " +
        "22 44 61 6c 65 74 22 7d"
      ).replace(/ /g, ""),
    );
  });

  it("example 3: numbers, nesting, case", () => {
    const input = String.raw`{"zeta":1,"Zeta":2,"é":"x\u0007\u001f/","a":[1.50,-0.0,1e21,1E-7,0.1,100.0],"b":{"c":null,"a":true}}`;
    expect(canonicalize(JSON.parse(input))).toBe(
      String.raw`{"Zeta":2,"a":[1.5,0,1e+21,1e-7,0.1,100],"b":{"a":true,"c":null},"zeta":1,"é":"x\u0007\u001f/"}`,
    );
  });

  it("refuses what the protocol refuses", () => {
    expect(() => canonicalize(9007199254740992)).toThrow(CanonicalError);
    expect(() => canonicalize(-9007199254740992)).toThrow(CanonicalError);
    expect(canonicalize(9007199254740991)).toBe("9007199254740991");
    expect(canonicalize(1e21)).toBe("1e+21");
    expect(() => canonicalize(NaN)).toThrow(CanonicalError);
    expect(() => canonicalize("\ud800")).toThrow(CanonicalError);
    let deep: unknown = 1;
    for (let i = 0; i < 32; i++) deep = [deep];
    expect(canonicalize(deep)).toBe("[".repeat(32) + "1" + "]".repeat(32));
    expect(() => canonicalize([deep])).toThrow(CanonicalError);
  });

  it("leaves out undefined members, as JSON.stringify does", () => {
    expect(canonicalize({ b: undefined, a: 1 })).toBe('{"a":1}');
  });
});
