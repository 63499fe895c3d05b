import json

import numpy as np
import pytest

from tool.label_io import save_label_png
from voc12.annotations import (
    AnnotationError,
    Box,
    Point,
    image_label_from_xml,
    read_box_annotation,
    read_boxes,
    read_points,
    read_scribble,
)


def _obj(name, box, difficult=None, extra=""):
    diff = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    xmin, ymin, xmax, ymax = box
    return (f"<object><name>{name}</name><pose>Left</pose>{diff}{extra}<bndbox><xmin>{xmin}</xmin>"
            f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def _xml(tmp_path, objects, size=(100, 80), name="a.xml"):
    size_xml = "" if size is None else (f"<size><width>{size[1]}</width><height>{size[0]}</height>"
                                        "<depth>3</depth></size>")
    path = tmp_path / name
    path.write_text(f"<annotation><filename>a.jpg</filename>{size_xml}{''.join(objects)}</annotation>")
    return path


def test_boxes_are_0_based_inclusive_in_file_order_with_difficult(tmp_path):
    path = _xml(tmp_path, [
        _obj("dog", (1, 2, 30, 40), difficult=0),
        _obj("person", (10.0, 11, 20, 21), difficult=1),
        _obj("aeroplane", (5, 5, 5, 5)),
    ])
    boxes = read_boxes(path)
    assert boxes == [
        Box(cls=12, x0=0, y0=1, x1=29, y1=39, difficult=False),
        Box(cls=15, x0=9, y0=10, x1=19, y1=20, difficult=True),
        Box(cls=1, x0=4, y0=4, x1=4, y1=4, difficult=False),
    ]
    assert boxes[0].area == 30 * 39 and boxes[2].area == 1


def test_boxes_clip_to_xml_size_or_given_size(tmp_path):
    # image 100 (H) x 80 (W); VOC max coordinates are 80 / 100 (1-based) -> 79 / 99
    path = _xml(tmp_path, [_obj("cat", (0, -3, 90, 120))])
    assert read_boxes(path) == [Box(cls=8, x0=0, y0=0, x1=79, y1=99)]
    assert read_boxes(path, image_size=(50, 60)) == [Box(cls=8, x0=0, y0=0, x1=59, y1=49)]
    no_size = _xml(tmp_path, [_obj("cat", (1, 1, 90, 120))], size=None, name="b.xml")
    assert read_boxes(no_size, image_size=(50, 60)) == [Box(cls=8, x0=0, y0=0, x1=59, y1=49)]
    with pytest.raises(AnnotationError, match="b.xml.*size"):
        read_boxes(no_size)


def test_inverted_and_outside_boxes_dropped_with_warning(tmp_path):
    path = _xml(tmp_path, [
        _obj("cat", (30, 10, 20, 40)),     # xmax < xmin
        _obj("cow", (85, 10, 95, 40)),     # right of an 80-wide image
        _obj("dog", (3, 3, 4, 4)),
    ], name="odd.xml")
    with pytest.warns(UserWarning, match="odd.xml") as record:
        boxes = read_boxes(path)
    assert len(record) == 2
    assert boxes == [Box(cls=12, x0=2, y0=2, x1=3, y1=3)]
    with pytest.warns(UserWarning, match="unknown"):
        kept, dropped = read_box_annotation(path)
    assert kept == boxes
    # the inverted cat box still marks where the cat may be (corners sorted); the cow box is off-image
    assert dropped == [Box(cls=8, x0=19, y0=9, x1=29, y1=39)]


@pytest.mark.parametrize("body, message", [
    ("<annotation><object>", "broken XML"),
    (f"<annotation>{_obj('unicorn', (1, 1, 2, 2))}</annotation>", "unknown class 'unicorn'"),
    ("<annotation><size><width>5</width><height>5</height></size><object><name>cat</name></object>"
     "</annotation>", "bndbox"),
    ("<annotation><size><width>5</width><height>5</height></size><object><name>cat</name><bndbox>"
     "<xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox></object></annotation>", "ymax"),
    ("<annotation><size><width>5</width><height>5</height></size>"
     f"{_obj('cat', ('one', 1, 2, 2))}</annotation>", "not a number"),
    ("<annotation><object><bndbox/></object></annotation>", "name"),
])
def test_bad_xml_raises_annotation_error_naming_file(tmp_path, body, message):
    path = tmp_path / "bad_file.xml"
    path.write_text(body)
    with pytest.raises(AnnotationError, match=message) as info:
        read_boxes(path)
    assert "bad_file.xml" in str(info.value)


def test_missing_xml_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.xml"):
        read_boxes(tmp_path / "gone.xml")


def test_image_label_from_xml_counts_difficult_and_ignores_parts(tmp_path):
    part = "<part><name>head</name><bndbox><xmin>1</xmin></bndbox></part>"
    path = _xml(tmp_path, [
        _obj("person", (1, 1, 5, 5), extra=part),
        _obj("tvmonitor", (1, 1, 5, 5), difficult=1),
        _obj("person", (2, 2, 6, 6)),
    ])
    label = image_label_from_xml(path)
    expected = np.zeros(20, np.float32)
    expected[[14, 19]] = 1
    assert label.dtype == np.float32
    np.testing.assert_array_equal(label, expected)
    with pytest.raises(AnnotationError, match="unknown class"):
        image_label_from_xml(_xml(tmp_path, [_obj("Person", (1, 1, 2, 2))], name="c.xml"))


def test_read_scribble_validates_values(tmp_path):
    scribble = np.full((6, 7), 255, np.uint8)
    scribble[2, 1:5] = 3
    scribble[4, :] = 0
    save_label_png(tmp_path / "s.png", scribble)
    out = read_scribble(tmp_path / "s.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, scribble)
    scribble[0, 0] = 21
    save_label_png(tmp_path / "bad.png", scribble)
    with pytest.raises(AnnotationError, match=r"bad.png.*\[21\]"):
        read_scribble(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        read_scribble(tmp_path / "none.png")


def test_read_points(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"class": 0, "x": 3, "y": 4}, {"class": 20, "x": 9, "y": 0}]))
    assert read_points(path) == [Point(cls=0, x=3, y=4), Point(cls=20, x=9, y=0)]
    assert read_points(path, image_size=(5, 10)) == read_points(path)
    with pytest.raises(AnnotationError, match="p.json.*outside"):
        read_points(path, image_size=(5, 9))


@pytest.mark.parametrize("content, message", [
    ("[{\"class\": 1, \"x\": 2", "broken JSON"),
    ("{\"class\": 1, \"x\": 2, \"y\": 3}", "JSON list"),
    ("[{\"class\": 1, \"x\": 2}]", "exactly"),
    ("[{\"class\": 1, \"x\": 2, \"y\": 3, \"z\": 0}]", "exactly"),
    ("[{\"class\": 1, \"x\": 2.5, \"y\": 3}]", "non-integer"),
    ("[{\"class\": true, \"x\": 2, \"y\": 3}]", "non-integer"),
    ("[{\"class\": 21, \"x\": 2, \"y\": 3}]", "class 21"),
    ("[{\"class\": 1, \"x\": -1, \"y\": 3}]", "negative"),
])
def test_bad_points_raise_naming_file(tmp_path, content, message):
    path = tmp_path / "bad_points.json"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message) as info:
        read_points(path)
    assert "bad_points.json" in str(info.value)
