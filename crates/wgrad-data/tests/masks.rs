//! Segmentation data on files and buffers the tests write themselves: the mask folder reader
//! (grey and palette PNGs, nearest-neighbour resize, VOC's void value, every error), mask
//! datasets' split/crop/resize, and augmentation that moves a mask with its image.

mod common;

use common::TempDir;
use wgrad_data::{DataLoader, Dataset, Error, MaskFolder, Transform};

/// An 8-bit PNG of `values` (`w×h`), grey or with a palette (indices are the values).
fn png(values: &[u8], w: u32, h: u32, palette: bool) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        if palette {
            enc.set_color(png::ColorType::Indexed);
            // Colours unrelated to the indices, so reading colours instead would be caught.
            let pal: Vec<u8> = (0..=255u8).flat_map(|i| [255 - i, i / 2, 77]).collect();
            enc.set_palette(pal);
        } else {
            enc.set_color(png::ColorType::Grayscale);
        }
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(values).unwrap();
    }
    out
}

fn rgb_png(w: u32, h: u32, v: u8) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(&vec![v; (w * h * 3) as usize]).unwrap();
    }
    out
}

#[test]
fn grey_and_palette_masks_read_as_classes() {
    let dir = TempDir::new("masks-read");
    let m0: Vec<u8> = (0..16).map(|i| (i % 3) as u8).collect();
    let m1: Vec<u8> = (0..16).map(|i| if i < 8 { 2 } else { 255 }).collect();
    dir.write("images/a.png", &rgb_png(4, 4, 10));
    dir.write("images/b.png", &rgb_png(4, 4, 200));
    dir.write("images/notes.txt", b"not an image");
    dir.write("masks/a.png", &png(&m0, 4, 4, false));
    dir.write("masks/b.png", &png(&m1, 4, 4, true));
    let root = dir.path();
    let reader = MaskFolder::new(root.join("images"), root.join("masks"), [4, 4], 3);
    // VOC's border value is outside the classes until it is mapped.
    match reader.read() {
        Err(Error::Format { path, reason }) => {
            assert!(path.ends_with("masks/b.png"), "{path:?}");
            assert!(
                reason.contains("255") && reason.contains("void"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let ds = reader.clone().void(255, 0).read().unwrap();
    assert_eq!((ds.len(), ds.label_shape()), (2, &[4usize, 4][..]));
    assert!(ds.has_masks());
    let (img, mask) = ds.get(0).unwrap();
    assert_eq!(img.len(), 4 * 4 * 3);
    assert!((img[0] - 10.0 / 255.0).abs() < 1e-6);
    let want0: Vec<u32> = m0.iter().map(|&v| v as u32).collect();
    assert_eq!(mask, &want0[..]);
    let want1: Vec<u32> = m1.iter().map(|&v| if v == 255 { 0 } else { 2 }).collect();
    assert_eq!(ds.get(1).unwrap().1, &want1[..]);

    // Resized to 2×2 by nearest neighbour with half-pixel centres: rows/cols 1 and 3.
    let small = MaskFolder::new(root.join("images"), root.join("masks"), [2, 2], 3)
        .read()
        .unwrap_err();
    assert!(matches!(small, Error::Format { .. }));
    let small = MaskFolder::new(root.join("images"), root.join("masks"), [2, 2], 3)
        .void(255, 1)
        .read()
        .unwrap();
    let pick = |m: &[u8], y: usize, x: usize| m[y * 4 + x] as u32;
    assert_eq!(
        small.get(0).unwrap().1,
        &[
            pick(&m0, 1, 1),
            pick(&m0, 1, 3),
            pick(&m0, 3, 1),
            pick(&m0, 3, 3)
        ]
    );
    assert_eq!(small.get(1).unwrap().1, &[2, 2, 1, 1]);
}

#[test]
fn broken_mask_folders_are_format_errors() {
    let dir = TempDir::new("masks-bad");
    let root = dir.path();
    dir.write("images/a.png", &rgb_png(2, 2, 1));
    // No mask for a.png.
    std::fs::create_dir_all(root.join("masks")).unwrap();
    let r = MaskFolder::new(root.join("images"), root.join("masks"), [2, 2], 2);
    match r.read() {
        Err(Error::Format { reason, .. }) => assert!(reason.contains("no mask"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // An RGB mask is a picture of classes, not classes.
    dir.write("masks/a.png", &rgb_png(2, 2, 1));
    match r.read() {
        Err(Error::Format { reason, .. }) => assert!(reason.contains("8-bit grey"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Not a PNG at all.
    dir.write("masks/a.png", b"garbage");
    assert!(matches!(r.read(), Err(Error::Format { .. })));
    // No images.
    let empty = MaskFolder::new(root.join("masks"), root.join("masks"), [2, 2], 2);
    assert!(matches!(empty.read(), Err(Error::Format { .. })));
    let missing = MaskFolder::new(root.join("nowhere"), root.join("masks"), [2, 2], 2);
    assert!(matches!(missing.read(), Err(Error::Io { .. })));
}

/// A dataset whose mask equals its single-channel image's value rounded: any misalignment of
/// mask and image after augmentation shows.
fn tagged(n: usize, h: usize, w: usize) -> Dataset {
    let mut images = Vec::new();
    let mut masks = Vec::new();
    for i in 0..n {
        for p in 0..h * w {
            let class = ((i * 7 + p * 3) % 5) as u32;
            images.push(class as f32 + 1.0);
            masks.push(class + 1);
        }
    }
    Dataset::with_masks(images, [h, w, 1], masks, 6).unwrap()
}

#[test]
fn masks_follow_their_images_through_flips_and_crops() {
    let ds = tagged(12, 5, 6);
    let loader = DataLoader::new(ds.clone(), 4)
        .shuffle(true)
        .seed(3)
        .transform(Transform::random_horizontal_flip())
        .transform(Transform::random_crop(2))
        .transform(Transform::rescale(10.0, 0.0));
    let mut moved = 0;
    for b in loader.epoch(0) {
        assert_eq!(b.label_shape, vec![b.len(), 5, 6]);
        for (px, &class) in b.images.iter().zip(&b.labels) {
            // Padding is 0 in the image and class 0 in the mask; elsewhere image = 10·class.
            assert_eq!(*px, class as f32 * 10.0);
        }
        moved += b.labels.iter().filter(|&&c| c == 0).count();
    }
    assert!(moved > 0, "the crops should have padded something");

    // Crop, pad and resize keep the pairing.
    let padded = ds.crop_or_pad(7, 8);
    let (img, mask) = padded.get(3).unwrap();
    assert!(img.iter().zip(mask).all(|(&p, &c)| p == c as f32));
    let resized = ds.resize(10, 12);
    assert_eq!(resized.label_shape(), &[10, 12]);
    let (_, mask) = resized.get(2).unwrap();
    let (_, src) = ds.get(2).unwrap();
    // Exact doubling: nearest picks source pixel (y/2, x/2).
    for y in 0..10 {
        for x in 0..12 {
            assert_eq!(mask[y * 12 + x], src[(y / 2) * 6 + x / 2]);
        }
    }
    let (train, val) = ds.split(0.75, 1);
    assert_eq!((train.len(), val.len()), (9, 3));
    assert_eq!(train.labels().len(), 9 * 30);
    assert_eq!(ds.clone().take(5).labels().len(), 5 * 30);
    // Masks of the wrong size or with classes out of range are refused.
    assert!(Dataset::with_masks(vec![0.0; 8], [2, 2, 1], vec![0; 7], 2).is_err());
    assert!(Dataset::with_masks(vec![0.0; 4], [2, 2, 1], vec![0, 1, 2, 0], 2).is_err());
}

#[test]
fn yolo_text_labels_read_as_pixel_boxes() {
    use wgrad_data::yolo_folder;
    let dir = TempDir::new("yolo-labels");
    let root = dir.path();
    dir.write("images/a.png", &rgb_png(8, 4, 50));
    dir.write("images/b.png", &rgb_png(8, 4, 60));
    dir.write(
        "labels/a.txt",
        b"1 0.5 0.5 0.25 0.5\n\n2 0.125 0.25 0.25 0.5\n",
    );
    // b has no label file: an image without objects.
    let set = yolo_folder(root.join("images"), root.join("labels"), [8, 16], 3).unwrap();
    assert_eq!((set.len(), set.shape), (2, [8, 16, 3]));
    let a = &set.objects[0];
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].class, a[0].bbox), (1, [2.0, 6.0, 6.0, 10.0]));
    assert_eq!((a[1].class, a[1].bbox), (2, [0.0, 0.0, 4.0, 4.0]));
    assert!(set.objects[1].is_empty());
    for (text, needle) in [
        ("1 0.5 0.5 0.25\n", "5 fields"),
        ("x 0.5 0.5 0.2 0.2\n", "class"),
        ("3 0.5 0.5 0.2 0.2\n", "not below 3"),
        ("1 0.5 nan? 0.2 0.2\n", "not a number"),
        ("1 0.5 1.5 0.2 0.2\n", "outside [0, 1]"),
    ] {
        dir.write("labels/a.txt", text.as_bytes());
        match yolo_folder(root.join("images"), root.join("labels"), [8, 16], 3) {
            Err(Error::Format { path, reason }) => {
                assert!(path.ends_with("labels/a.txt"), "{path:?}");
                assert!(
                    reason.contains(needle) && reason.contains("line 1"),
                    "{reason}"
                );
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn coco_json_annotations_read_as_pixel_boxes() {
    use wgrad_data::coco_folder;
    let dir = TempDir::new("coco-json");
    let root = dir.path();
    dir.write("img/a.png", &rgb_png(8, 4, 50));
    dir.write("img/b.png", &rgb_png(8, 4, 60));
    let json = r#"{
      "images": [{"id": 7, "file_name": "a.png", "width": 8, "height": 4},
                 {"id": 3, "file_name": "b.png", "width": 8, "height": 4}],
      "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
      "annotations": [
        {"image_id": 7, "category_id": 18, "bbox": [2, 1, 4, 2]},
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 1},
        {"image_id": 3, "category_id": 1, "bbox": [0.5, 0, 2, 4]}
      ]}"#;
    let ann = dir.write("ann.json", json.as_bytes());
    // Resized to 8×16: x scales by 2, y by 2.
    let (set, names) = coco_folder(&ann, root.join("img"), [8, 16]).unwrap();
    assert_eq!(names, ["person", "dog"]);
    assert_eq!(set.len(), 2);
    assert_eq!(set.objects[0].len(), 1, "the crowd region is left out");
    assert_eq!(
        (set.objects[0][0].class, set.objects[0][0].bbox),
        (1, [2.0, 4.0, 6.0, 12.0])
    );
    assert_eq!(
        (set.objects[1][0].class, set.objects[1][0].bbox),
        (0, [0.0, 1.0, 8.0, 5.0])
    );
    for (text, needle) in [
        ("{", "not valid JSON"),
        (
            r#"{"images": [], "annotations": [], "categories": []}"#,
            "no images",
        ),
        (
            r#"{"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 4}], "annotations": [{"image_id": 2, "category_id": 1, "bbox": [0,0,1,1]}], "categories": [{"id": 1}]}"#,
            "unknown image",
        ),
        (
            r#"{"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 4}], "annotations": [{"image_id": 1, "category_id": 5, "bbox": [0,0,1,1]}], "categories": [{"id": 1}]}"#,
            "unknown category",
        ),
        (
            r#"{"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 4}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0,0,-1,1]}], "categories": [{"id": 1}]}"#,
            "non-negative",
        ),
        (
            r#"{"images": [{"id": 1, "file_name": "a.png", "width": 8}], "annotations": [], "categories": []}"#,
            "positive",
        ),
        (r#"{"annotations": [], "categories": []}"#, "\"images\""),
    ] {
        let p = dir.write("bad.json", text.as_bytes());
        match coco_folder(&p, root.join("img"), [8, 16]) {
            Err(Error::Format { reason, .. }) => {
                assert!(reason.contains(needle), "{text}: {reason}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let missing = dir.write("missing.json", br#"{"images": [{"id": 1, "file_name": "zz.png", "width": 8, "height": 4}], "annotations": [], "categories": []}"#);
    assert!(matches!(
        coco_folder(&missing, root.join("img"), [8, 16]),
        Err(Error::Io { .. })
    ));
}
