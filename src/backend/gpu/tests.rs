//! GPU tests that need no GPU: every shader variant the backend can request is parsed and
//! validated by naga, and every uniform struct's WGSL layout equals its Rust twin.

use super::ops;

fn parse(key: &super::shader::ShaderKey) -> naga::Module {
    let src = key.wgsl().unwrap_or_else(|e| panic!("{key:?}: {e}"));
    naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{key:?}:\n{}", e.emit_to_string(&src)))
}

#[test]
// `unpack2x16float` is core WGSL; naga files it under this capability, which wgpu grants on
// Vulkan and WebGPU. `F16` variants also need `shader-f16`, requested where the adapter has it.
fn every_shader_variant_validates() {
    let mut variants = ops::all_variants();
    assert!(variants.len() > 60, "{} variants", variants.len());
    // The test-only load trace (`common/bytes.wgsl` TRACE) in both layouts.
    let q8 = ops::linear_key(crate::quant::GgmlType::Q8_0, 1, false, true, true);
    variants.extend([q8.clone().flag("TRACE"), ops::coop_key(q8, false).flag("TRACE")]);
    for key in &variants {
        let module = parse(key);
        let mut caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        if key.defines.contains_key("F16") {
            caps |= naga::valid::Capabilities::SHADER_FLOAT16;
        }
        // `SUBGROUPS` variants need the `subgroups` feature (capability SUBGROUP, which naga
        // grants every subgroup operation in every stage).
        if key.defines.contains_key("SUBGROUPS") {
            caps |= naga::valid::Capabilities::SUBGROUP;
        }
        let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        v.validate(&module).unwrap_or_else(|e| panic!("{key:?}: {e:?}"));
        assert!(
            module.entry_points.iter().any(|ep| ep.name == key.entry),
            "{key:?}: no entry point '{}'",
            key.entry
        );
    }
}

#[test]
fn every_shader_file_is_used_by_some_variant() {
    let variants = ops::all_variants();
    for (path, _) in super::shader::SOURCES {
        if let Some(name) = path.strip_suffix(".wgsl").filter(|p| !p.starts_with("common/")) {
            assert!(variants.iter().any(|k| k.shader == name), "shaders/{path} has no variant");
        }
    }
}

#[test]
fn uniform_structs_match_their_rust_twins() {
    for (shader, fields, size) in ops::PARAM_STRUCTS {
        let key = ops::all_variants().into_iter().find(|k| k.shader == *shader).unwrap();
        let module = parse(&key);
        let ty = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))
            .unwrap_or_else(|| panic!("{shader}: no Params struct"))
            .1;
        let naga::TypeInner::Struct { members, span } = &ty.inner else { panic!("{shader}: Params is not a struct") };
        assert_eq!(*span as usize, *size, "{shader}: Params size");
        let wgsl: Vec<(String, usize)> =
            members.iter().map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize)).collect();
        let rust: Vec<(String, usize)> = fields.iter().map(|(n, o)| (n.to_string(), *o)).collect();
        assert_eq!(wgsl, rust, "{shader}: Params fields (name, offset)");
    }
}

#[test]
fn every_format_has_its_helper_registered_and_included() {
    use crate::quant::GgmlType;
    for ty in GgmlType::ALL {
        let helper = super::shader::source(ty.wgsl_helper()).unwrap();
        let s = ops::get_rows_key(ty).wgsl().unwrap();
        // Its header comment names the format (and, for blocks, the block's bytes)...
        let head = helper.lines().find(|l| !l.starts_with('#')).unwrap();
        assert!(head.to_lowercase().contains(&ty.name().to_lowercase()), "{ty}: helper header '{head}'");
        if ty.block_size() > 1 {
            assert!(head.contains(&format!("({} bytes", ty.type_size())), "{ty}: helper header '{head}'");
        }
        // ...and is in the type's variants, the only decode helper there.
        assert!(s.contains(head), "{ty}: {} not included", ty.wgsl_helper());
        assert_eq!(s.matches("fn dq4(").count(), 1, "{ty}: exactly one decode helper");
    }
}
