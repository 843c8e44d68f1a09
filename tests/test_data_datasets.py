"""Each public dataset layout in miniature (real files), labels by name, and the loader."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from _videos import coded_frame, write_video

from dtfcli.data.datasets import AnnotationError, build_dataset, label_mapping
from dtfcli.data.loader import SkipCounter, make_loader
from dtfcli.data.transforms import TestTransform


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One small real file per container format, copied into the layouts."""
    folder = tmp_path_factory.mktemp("src")
    write_video(folder / "a.mp4", 12)
    write_video(folder / "a.webm", 12, codec="libvpx-vp9")
    write_video(folder / "a.avi", 12, codec="mpeg4", options={"bf": "2"})
    return folder


def test_kinetics400_csv_with_quotes_odd_ids_and_sanitised_folders(tmp_path, clips, caplog):
    root = tmp_path / "k400"
    (root / "annotations").mkdir(parents=True)
    rows = [
        ('"passing American football (in game)"', "-abc_DEF-12", 10, 20),
        ('"massaging person\'s head"', "_x_y-", 0, 10),
        ("abseiling", "q1", 5, 15),
        ("abseiling", "gone_video", 1, 11),  # listed but not downloaded
    ]
    lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
    lines += [f"{label},{vid},{s},{e},val,0" for label, vid, s, e in rows]
    (root / "annotations" / "validate.csv").write_text("\n".join(lines) + "\n")
    # Downloaders sanitise class folder names; the reader must not care.
    for label, vid, s, e in rows[:3]:
        folder = root / "val" / label.strip('"').replace(" ", "_").replace("(", "").replace(")", "").replace("'", "")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips / "a.mp4", folder / f"{vid}_{s:06d}_{e:06d}.mp4")
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("kinetics400", root, "val", clip_len=4, frame_interval=2)
    assert ds.classes == ["abseiling", "massaging person's head", "passing American football (in game)"]
    by_id = {s.path.split("/")[-1]: ds.classes[s.label] for s in ds.samples}
    assert by_id == {"-abc_DEF-12_000010_000020.mp4": "passing American football (in game)",
                     "_x_y-_000000_000010.mp4": "massaging person's head",
                     "q1_000005_000015.mp4": "abseiling"}
    assert len(ds.missing) == 1
    records = [r for r in caplog.records if "missing" in r.getMessage()]
    assert len(records) == 1 and "1 of 4" in records[0].getMessage()
    assert ds[0]["clip"].shape == (4, 48, 64, 3)


def test_kinetics_malformed_row_names_file_and_line(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                          "abseiling,a1,0,10,val\nabseiling,a2,zero,10,val\n")
    with pytest.raises(AnnotationError, match=r"validate\.csv:3"):
        build_dataset("kinetics400", tmp_path, "val")


def test_model_label_order_is_matched_by_name():
    dataset = ["abseiling", "passing American football (in game)", "massaging person's head"]
    model = ["massaging_persons_head", "abseiling", "passing_American_football_in_game"]
    assert label_mapping(dataset, model).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="not among the model's labels"):
        label_mapping(dataset + ["yoga"], model)


def _ssv2(root, clips, entries, labels):
    (root / "labels").mkdir(parents=True)
    (root / "20bn-something-something-v2").mkdir()
    (root / "labels" / "labels.json").write_text(json.dumps({n: str(i) for i, n in enumerate(labels)}))
    (root / "labels" / "validation.json").write_text(json.dumps(entries))
    for e in entries:
        shutil.copy(clips / "a.webm", root / "20bn-something-something-v2" / f"{e['id']}.webm")


def test_ssv2_labels_from_templates(tmp_path, clips):
    labels = ["Holding something", "Putting something on a surface"]
    entries = [{"id": "7", "label": "putting cup on a surface", "template": "Putting [something] on a surface",
                "placeholders": ["cup"]},
               {"id": "12", "label": "holding pen", "template": "Holding [something]", "placeholders": ["pen"]}]
    _ssv2(tmp_path, clips, entries, labels)
    ds = build_dataset("ssv2", tmp_path, "validation", transform=TestTransform(32))
    assert ds.classes == labels and [s.label for s in ds.samples] == [1, 0]
    assert ds.sampling == "segments" and ds[0]["clip"].shape == (3, 8, 32, 32)


def test_ssv2_unknown_template_names_the_file(tmp_path, clips):
    _ssv2(tmp_path, clips, [{"id": "1", "template": "Juggling [something]"}], ["Holding something"])
    with pytest.raises(AnnotationError, match="validation.json.*Juggling something"):
        build_dataset("ssv2", tmp_path, "validation")


def test_ssv1_frame_folders_and_both_class_orders(tmp_path):
    from PIL import Image

    (tmp_path / "something-something-v1-labels.csv").write_text("Pushing something\nDropping something\n")
    (tmp_path / "something-something-v1-validation.csv").write_text("100;Dropping something\n101;Pushing something\n")
    for vid in ("100", "101"):
        folder = tmp_path / "20bn-something-something-v1" / vid
        folder.mkdir(parents=True)
        for i in range(6):
            Image.fromarray(coded_frame(i, 48, 64)).save(folder / f"{i + 1:05d}.jpg")
    ds = build_dataset("ssv1", tmp_path, "validation", clip_len=3)
    assert ds.classes == ["Pushing something", "Dropping something"]
    assert [ds.classes[s.label] for s in ds.samples] == ["Dropping something", "Pushing something"]
    assert ds[0]["clip"].shape == (3, 48, 64, 3)
    sorted_ds = build_dataset("ssv1", tmp_path, "validation", class_order="sorted")
    assert sorted_ds.classes == ["Dropping something", "Pushing something"]
    assert [sorted_ds.classes[s.label] for s in sorted_ds.samples] == ["Dropping something", "Pushing something"]
    (tmp_path / "something-something-v1-validation.csv").write_text("100;Dropping something\n101;Pushing;x\n")
    with pytest.raises(AnnotationError, match=r"validation\.csv:2"):
        build_dataset("ssv1", tmp_path, "validation")


def test_ucf101_split_files(tmp_path, clips):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 2\n"
                                           "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n")
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g02_c01.avi\n")
    for rel in ("Archery/v_Archery_g01_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                "Archery/v_Archery_g02_c01.avi"):
        (tmp_path / "UCF-101" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips / "a.avi", tmp_path / "UCF-101" / rel)
    train = build_dataset("ucf101", tmp_path, "train", clip_len=4, frame_interval=1)
    assert train.classes == ["ApplyEyeMakeup", "Archery"] and [s.label for s in train.samples] == [1, 0]
    test = build_dataset("ucf101", tmp_path, "test")
    assert len(test) == 1 and test.samples[0].label == 1
    assert train[0]["clip"].shape == (4, 48, 64, 3)
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 2\nBowling/v.avi 3\n")
    with pytest.raises(AnnotationError, match=r"trainlist01\.txt:2"):
        build_dataset("ucf101", tmp_path, "train")


def test_hmdb51_split_files(tmp_path, clips):
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "wave_test_split1.txt").write_text("w1.avi 1\nw2.avi 2\nw3.avi 0\n")
    (splits / "brush_hair_test_split1.txt").write_text("b1.avi 2\nb2.avi 1\n")
    for cls, names in {"wave": ("w1", "w2", "w3"), "brush_hair": ("b1", "b2")}.items():
        (tmp_path / "hmdb51" / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(clips / "a.avi", tmp_path / "hmdb51" / cls / f"{n}.avi")
    train = build_dataset("hmdb51", tmp_path, "train")
    test = build_dataset("hmdb51", tmp_path, "test")
    assert train.classes == ["brush_hair", "wave"]
    assert sorted((s.path.split("/")[-1], s.label) for s in train.samples) == [("b2.avi", 0), ("w1.avi", 1)]
    assert sorted((s.path.split("/")[-1], s.label) for s in test.samples) == [("b1.avi", 0), ("w2.avi", 1)]
    (splits / "wave_test_split1.txt").write_text("w1.avi 1\nw2.avi\n")
    with pytest.raises(AnnotationError, match=r"wave_test_split1\.txt:2"):
        build_dataset("hmdb51", tmp_path, "train")


def test_path_label_list_and_folder_per_class(tmp_path, clips):
    (tmp_path / "my videos").mkdir()
    shutil.copy(clips / "a.mp4", tmp_path / "my videos" / "clip one.mp4")
    shutil.copy(clips / "a.webm", tmp_path / "my videos" / "clip2.webm")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "val.txt").write_text("my videos/clip one.mp4 1\nmy videos/clip2.webm 0\n")
    ds = build_dataset("list", tmp_path, "val")
    assert ds.classes == ["cat", "dog"] and [s.label for s in ds.samples] == [1, 0]
    (tmp_path / "val.txt").write_text("my videos/clip one.mp4 1\nmy videos/clip2.webm 7\n")
    with pytest.raises(AnnotationError, match=r"val\.txt:2"):
        build_dataset("list", tmp_path, "val")

    for cls, src in (("walking", "a.mp4"), ("jumping", "a.webm"), ("jumping", "a.avi")):
        (tmp_path / "tree" / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(clips / src, tmp_path / "tree" / cls / src)
    folder = build_dataset("folder", tmp_path / "tree", "")
    assert folder.classes == ["jumping", "walking"]
    assert sorted(s.label for s in folder.samples) == [0, 0, 1]


def test_loader_skips_and_counts_broken_videos(tmp_path, clips):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            shutil.copy(clips / "a.mp4", tmp_path / cls / f"{i}.mp4")
    (tmp_path / "b" / "broken.mp4").write_text("not a video")
    (tmp_path / "a" / "empty.mp4").write_bytes(b"")
    ds = build_dataset("folder", tmp_path, "", clip_len=4, frame_interval=2, transform=TestTransform(32))
    assert len(ds) == 8
    counter, seen = SkipCounter(), 0
    for batch in make_loader(ds, batch_size=3, num_workers=2, shuffle=True, seed=0):
        counter.update(batch)
        if batch["clip"] is not None:
            assert batch["clip"].shape[1:] == (3, 4, 32, 32) and batch["clip"].dtype == torch.float32
            seen += batch["clip"].shape[0]
    assert seen == 6 and counter.count == 2
    assert {p.split("/")[-1] for p, _ in counter.examples} == {"broken.mp4", "empty.mp4"}
    assert "2 videos skipped" in counter.summary()


# -- the releases' own file names -----------------------------------------------------------
def _assert_names_paths(exc: pytest.ExceptionInfo, *paths) -> None:
    """A not-found error: one line, naming every path it looked at."""
    message = str(exc.value)
    assert "\n" not in message and "not found" in message
    for p in paths:
        assert str(p) in message, f"{p} not named in: {message}"


SSV2_CLASSES = {"Putting something on a surface": "1", "Holding something": "0",
                "Pretending to put something onto something": "2"}
SSV2_ENTRIES = {
    "train": [{"id": "11", "label": "holding pen", "template": "Holding [something]", "placeholders": ["pen"]},
              {"id": "12", "label": "putting cup on a surface", "template": "Putting [something] on a surface",
               "placeholders": ["cup"]}],
    "validation": [{"id": "21", "label": "pretending to put a spoon onto a plate",
                    "template": "Pretending to put [something] onto [something]",
                    "placeholders": ["a spoon", "a plate"]}],
    "test": [{"id": "31"}, {"id": "32"}],  # the released test file has ids only
}


@pytest.mark.parametrize("layout", ["release", "release-in-annotations", "short-names-in-labels"])
def test_ssv2_reads_the_release_and_its_repackagings(tmp_path, clips, layout):
    """The 20BN release: something-something-v2-*.json beside 20bn-something-something-v2/;
    MMAction2 moves those files to annotations/; the later download names them labels/*.json."""
    folder, prefix = {"release": ("", "something-something-v2-"),
                      "release-in-annotations": ("annotations", "something-something-v2-"),
                      "short-names-in-labels": ("labels", "")}[layout]
    ann = tmp_path / folder
    ann.mkdir(exist_ok=True)
    (ann / f"{prefix}labels.json").write_text(json.dumps(SSV2_CLASSES, indent=1))
    for split, entries in SSV2_ENTRIES.items():
        (ann / f"{prefix}{split}.json").write_text(json.dumps(entries))
    (ann / f"{prefix}test-answers.csv").write_text("31;Putting something on a surface\n32;Holding something\n")
    (tmp_path / "20bn-something-something-v2").mkdir()
    for entries in SSV2_ENTRIES.values():
        for e in entries:
            shutil.copy(clips / "a.webm", tmp_path / "20bn-something-something-v2" / f"{e['id']}.webm")

    train = build_dataset("ssv2", tmp_path, "train")
    assert train.classes == ["Holding something", "Putting something on a surface",
                             "Pretending to put something onto something"]  # by the string indices
    assert [(s.path.rsplit("/", 1)[1], s.label) for s in train.samples] == [("11.webm", 0), ("12.webm", 1)]
    val = build_dataset("ssv2", tmp_path, "val")
    assert [s.label for s in val.samples] == [2]
    test = build_dataset("ssv2", tmp_path, "test")
    assert [s.label for s in test.samples] == [1, 0]  # from the test answers
    assert test[0]["clip"].shape == (8, 48, 64, 3)
    (ann / f"{prefix}test-answers.csv").unlink()
    assert [s.label for s in build_dataset("ssv2", tmp_path, "test").samples] == [-1, -1]


def test_ssv2_not_found_names_every_path_tried(tmp_path):
    with pytest.raises(AnnotationError) as exc:
        build_dataset("ssv2", tmp_path, "train")
    _assert_names_paths(exc, *(tmp_path / d / n for d in ("", "labels", "label", "annotations")
                               for n in ("something-something-v2-labels.json", "labels.json")))
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(SSV2_CLASSES))
    with pytest.raises(AnnotationError) as exc:
        build_dataset("ssv2", tmp_path, "validation")
    _assert_names_paths(exc, tmp_path / "something-something-v2-validation.json",
                        tmp_path / "labels" / "validation.json", tmp_path / "annotations" / "validation.json")
    with pytest.raises(AnnotationError) as exc:
        build_dataset("ssv2", tmp_path / "nowhere", "train")
    _assert_names_paths(exc, tmp_path / "nowhere")


def test_ssv2_test_answers_with_an_unknown_class_names_the_line(tmp_path, clips):
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(SSV2_CLASSES))
    (tmp_path / "something-something-v2-test.json").write_text(json.dumps(SSV2_ENTRIES["test"]))
    (tmp_path / "something-something-v2-test-answers.csv").write_text("31;Holding something\n32;Juggling\n")
    with pytest.raises(AnnotationError, match=r"test-answers\.csv:2.*Juggling"):
        build_dataset("ssv2", tmp_path, "test")


def _k400_csv(path, rows, with_label=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    head = "label,youtube_id,time_start,time_end,split" if with_label else "youtube_id,time_start,time_end,split"
    lines = [head] + [(f"{label}," if with_label else "") + f"{vid},{s},{e},x" for label, vid, s, e in rows]
    path.write_text("\n".join(lines) + "\n")


def test_kinetics400_cvdf_layout_with_replacements(tmp_path, clips):
    """CVDF's k400/: annotations/{train,val,test}.csv, flat {train,val,test}/ folders, and
    replacement/replacement_for_corrupted_k400/ holding good copies of corrupted train videos."""
    rows = {"train": [("abseiling", "-t1", 0, 10), ("zumba", "t2", 30, 40)],
            "val": [("zumba", "v1", 5, 15)], "test": [("abseiling", "x1", 1, 11)]}
    for split, split_rows in rows.items():
        _k400_csv(tmp_path / "annotations" / f"{split}.csv", split_rows)
        (tmp_path / split).mkdir()
        for _, vid, s, e in split_rows:
            shutil.copy(clips / "a.mp4", tmp_path / split / f"{vid}_{s:06d}_{e:06d}.mp4")
    (tmp_path / "train" / "-t1_000000_000010.mp4").write_text("corrupted download")
    (tmp_path / "replacement" / "replacement_for_corrupted_k400").mkdir(parents=True)
    shutil.copy(clips / "a.mp4", tmp_path / "replacement" / "replacement_for_corrupted_k400" / "-t1_000000_000010.mp4")
    train = build_dataset("kinetics400", tmp_path, "train", clip_len=4, frame_interval=2)
    assert train.classes == ["abseiling", "zumba"]
    assert [(s.path.split("/")[-2], s.label) for s in train.samples] == [("replacement_for_corrupted_k400", 0),
                                                                        ("train", 1)]
    assert "error" not in train[0]
    val = build_dataset("kinetics400", tmp_path, "val")
    assert [s.path.split("/")[-2:] for s in val.samples] == [["val", "v1_000005_000015.mp4"]]
    assert len(build_dataset("kinetics400", tmp_path, "test")) == 1


def test_kinetics400_deepmind_and_mmaction2_names(tmp_path, clips):
    """DeepMind's kinetics400.tar.gz: kinetics400/{train,validate,test}.csv (the test CSV
    without labels); MMAction2: annotations/kinetics_{train,val}.csv and videos_{split}/{class}/."""
    _k400_csv(tmp_path / "kinetics400" / "validate.csv", [("yoga", "a", 0, 10)])
    _k400_csv(tmp_path / "kinetics400" / "test.csv", [("", "b", 0, 10)], with_label=False)
    (tmp_path / "videos_val" / "yoga").mkdir(parents=True)
    shutil.copy(clips / "a.mp4", tmp_path / "videos_val" / "yoga" / "a_000000_000010.mp4")
    (tmp_path / "test").mkdir()
    shutil.copy(clips / "a.mp4", tmp_path / "test" / "b_000000_000010.mp4")
    val = build_dataset("kinetics400", tmp_path, "val")
    assert val.classes == ["yoga"] and [s.label for s in val.samples] == [0]
    test = build_dataset("kinetics400", tmp_path, "test")
    assert [s.label for s in test.samples] == [-1]
    _k400_csv(tmp_path / "annotations" / "kinetics_val.csv", [("yoga", "a", 0, 10), ("yoga", "gone", 0, 10)])
    mm = build_dataset("kinetics400", tmp_path, "val")  # annotations/ is looked at first
    assert len(mm) == 1 and mm.missing == [str(tmp_path / "videos_val" / "gone_000000_000010.mp4")]


def test_kinetics400_not_found_names_every_path_tried(tmp_path):
    with pytest.raises(AnnotationError) as exc:
        build_dataset("kinetics400", tmp_path, "val")
    _assert_names_paths(exc, tmp_path / "annotations" / "val.csv", tmp_path / "annotations" / "validate.csv",
                        tmp_path / "val.csv", tmp_path / "kinetics400" / "validate.csv",
                        tmp_path / "annotations" / "kinetics_val.csv")


def _frames(folder, n=4):
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(coded_frame(i, 48, 64)).save(folder / f"{i + 1:05d}.jpg")


@pytest.mark.parametrize("folder,prefix", [("", "something-something-v1-"), ("annotations", "something-something-v1-"),
                                           ("labels", "")])
def test_ssv1_release_names_test_split_and_repackagings(tmp_path, folder, prefix):
    ann = tmp_path / folder
    ann.mkdir(exist_ok=True)
    (ann / f"{prefix}labels.csv").write_text("Pushing something\nDropping something\n")
    (ann / f"{prefix}train.csv").write_text("100;Dropping something\n")
    (ann / f"{prefix}test.csv").write_text("200\n201\n")  # the test split: ids only
    for vid in ("100", "200", "201"):
        _frames(tmp_path / "20bn-something-something-v1" / vid)
    assert [s.label for s in build_dataset("ssv1", tmp_path, "train").samples] == [1]
    test = build_dataset("ssv1", tmp_path, "test", clip_len=2)
    assert [s.label for s in test.samples] == [-1, -1] and test[1]["clip"].shape == (2, 48, 64, 3)
    (ann / f"{prefix}test-answers.csv").write_text("200;Pushing something\n201;Dropping something\n")
    assert [s.label for s in build_dataset("ssv1", tmp_path, "test").samples] == [0, 1]


def test_ssv1_not_found_names_every_path_tried(tmp_path):
    (tmp_path / "something-something-v1-labels.csv").write_text("Pushing something\n")
    with pytest.raises(AnnotationError) as exc:
        build_dataset("ssv1", tmp_path, "validation")
    _assert_names_paths(exc, *(tmp_path / d / n for d in ("", "annotations", "labels")
                               for n in ("something-something-v1-validation.csv", "validation.csv")))


def test_ucf101_release_lists_with_crlf_and_folds_and_mmaction2_layout(tmp_path, clips):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    # The release's list files end their lines with CRLF.
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    (lists / "trainlist02.txt").write_bytes(b"HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n")
    (lists / "testlist02.txt").write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n")
    for rel in ("HandstandPushups/v_HandStandPushups_g08_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"):
        (tmp_path / "UCF-101" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips / "a.avi", tmp_path / "UCF-101" / rel)
    train = build_dataset("ucf101", tmp_path, "train", fold=2)
    assert train.classes == ["ApplyEyeMakeup", "HandstandPushups"] and [s.label for s in train.samples] == [1]
    assert [s.label for s in build_dataset("ucf101", tmp_path, "test", fold=2).samples] == [0]
    with pytest.raises(AnnotationError) as exc:
        build_dataset("ucf101", tmp_path, "train", fold=3)
    _assert_names_paths(exc, lists / "trainlist03.txt", tmp_path / "annotations" / "trainlist03.txt")
    # MMAction2: the lists in annotations/, the class folders in videos/
    shutil.move(str(lists), str(tmp_path / "annotations"))
    shutil.move(str(tmp_path / "UCF-101"), str(tmp_path / "videos"))
    moved = build_dataset("ucf101", tmp_path, "train", fold=2)
    assert [s.path for s in moved.samples] == [str(tmp_path / "videos/HandstandPushups/v_HandStandPushups_g08_c01.avi")]


def test_ucf101_not_found_names_every_path_tried(tmp_path):
    with pytest.raises(AnnotationError) as exc:
        build_dataset("ucf101", tmp_path, "train")
    _assert_names_paths(exc, tmp_path / "ucfTrainTestlist" / "classInd.txt", tmp_path / "annotations" / "classInd.txt",
                        tmp_path / "classInd.txt")


def test_hmdb51_extracted_rars_and_split_files(tmp_path, clips, caplog):
    """hmdb51_org.rar holds one rar per class, each extracting to {class}/; the split files
    (test_train_splits.rar) end lines with a space."""
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text(
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
        "Brushing_my_waist_lenth_hair_brush_hair_u_nm_np1_ba_goo_0.avi 2 \n")
    (splits / "sit_test_split1.txt").write_text("#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi 1 \n")
    for cls, name in (("brush_hair", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi"),
                      ("brush_hair", "Brushing_my_waist_lenth_hair_brush_hair_u_nm_np1_ba_goo_0.avi"),
                      ("sit", "#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi")):
        (tmp_path / "hmdb51_org" / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(clips / "a.avi", tmp_path / "hmdb51_org" / cls / name)
    train = build_dataset("hmdb51", tmp_path, "train")
    assert train.classes == ["brush_hair", "sit"]
    assert sorted((s.path.split("/")[-1], s.label) for s in train.samples) == [
        ("#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi", 1), ("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0)]
    assert [s.label for s in build_dataset("hmdb51", tmp_path, "test").samples] == [0]
    shutil.rmtree(tmp_path / "hmdb51_org")
    (tmp_path / "hmdb51_org").mkdir()
    (tmp_path / "hmdb51_org" / "brush_hair.rar").write_bytes(b"Rar!")  # the class archives, not unpacked
    with caplog.at_level(logging.WARNING):
        assert len(build_dataset("hmdb51", tmp_path, "train")) == 0
    assert any("extract each class's .rar" in r.getMessage() for r in caplog.records)
    with pytest.raises(AnnotationError) as exc:
        build_dataset("hmdb51", tmp_path, "train", fold=2)
    _assert_names_paths(exc, splits / "*_test_split2.txt", tmp_path / "annotations" / "*_test_split2.txt",
                        tmp_path / "*_test_split2.txt")


def test_list_and_folder_not_found_name_the_paths(tmp_path):
    with pytest.raises(AnnotationError) as exc:
        build_dataset("list", tmp_path, "val")
    _assert_names_paths(exc, tmp_path / "val.txt")
    with pytest.raises(AnnotationError) as exc:
        build_dataset("folder", tmp_path / "missing", "train")
    _assert_names_paths(exc, tmp_path / "missing")
